"""The scanner-side client of amaqc: ``send`` a folder of images and print each series' verdict,
or ``watch`` an export folder and post every series once its files stop changing.

Light on purpose: it needs httpx, pydicom, rich and typer, never torch or the service's packages
(``tests/client/test_light.py`` imports it with torch blocked). Install it alone on a scanner
host with ``pip install ./client`` (the ``amaqc-client`` command), or use ``amaqc send`` /
``amaqc watch`` of the full install (``pip install 'amaqc[client]'`` adds httpx).

Modules: :mod:`.files` (what a file is, grouping into series), :mod:`.api` (the HTTP calls and
their errors), :mod:`.send`, :mod:`.spool` (the watch state on disk), :mod:`.watch`,
:mod:`.cli`.
"""

__version__ = "0.1.0"

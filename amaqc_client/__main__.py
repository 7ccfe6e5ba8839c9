"""``python -m amaqc_client send|watch``: the same as the ``amaqc-client`` command."""

from amaqc_client.cli import main

main()

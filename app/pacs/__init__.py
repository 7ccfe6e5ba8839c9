"""Results back to the PACS (issue 19, part 2): each series verdict as DICOM objects, sent with
C-STORE to the configured destinations through a durable outbox.

- ``report``: the verdict, its slices and their source headers, read from the database
- ``sr``: the DICOM Structured Report of a verdict (highdicom, Comprehensive SR)
- ``capture``: a secondary-capture heatmap overlay per flagged slice
- ``destinations``: ``AMAQC_PACS_DESTINATIONS`` parsed (AE title, host, port)
- ``store``: one C-STORE association per destination (pynetdicom)
- ``outbox``: the ``pacs_delivery`` rows: queued after the verdict, retried with backoff

Torch-free: the API builds the same SR it serves at ``GET /api/v1/series/{id}/sr``.
"""

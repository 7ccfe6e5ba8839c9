"""``python -m app`` is the ``amaqc`` command (used by torchrun, which needs a module)."""

from app.cli import main

main()

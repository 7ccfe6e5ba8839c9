"""DICOMweb (PS3.18): the STOW-RS store transaction, ``POST /dicomweb/studies[/{study}]``."""

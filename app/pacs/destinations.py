"""PACS destinations: ``AMAQC_PACS_DESTINATIONS`` is a list of ``AE_TITLE@host:port`` entries
separated by commas or spaces, e.g. ``PACS@pacs.example.org:104, QCVIEW@10.0.0.7:11112``
(an IPv6 host in brackets: ``PACS@[fd00::7]:104``). Each gets every report by C-STORE.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.config import check_ae_title


@dataclass(frozen=True)
class Destination:
    """One C-STORE SCP: its AE title (the called AE), host and TCP port."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


def parse_destination(text: str) -> Destination:
    """``"PACS@pacs.example.org:104"`` -> Destination; raises ValueError naming the entry."""
    ae_title, at, address = text.strip().rpartition("@")
    host, colon, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not at or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"a PACS destination must read AE_TITLE@host:port (port 1..65535), got {text!r}"
        )
    return Destination(check_ae_title(ae_title), host, int(port))


def parse_destinations(text: str) -> list[Destination]:
    """Every destination of ``AMAQC_PACS_DESTINATIONS`` (empty: none), duplicates dropped."""
    found: dict[str, Destination] = {}
    for entry in text.replace(",", " ").split():
        destination = parse_destination(entry)
        found.setdefault(str(destination), destination)
    return list(found.values())

"""Where things live: the repository, and the user's cache (git-ignored by being elsewhere)."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GUEST_IMAGES = REPO / "guest_images"


def cache_dir() -> Path:
    base = os.environ.get("BALLOON_E2E_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "balloon-e2e")
    p = Path(base)
    p.mkdir(parents=True, exist_ok=True)
    return p

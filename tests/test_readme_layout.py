"""The README's layout section stays true: every module it names exists where it says, and every module of the
study folders (config/, synthetic/, vae/, verdict/) is named there, so a new module is placed in the map."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMED_FOLDERS = ("config", "synthetic", "vae", "verdict")


def _layout() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("Layout:")
    return text[start:text.index("Words used throughout", start)]


def _experiments_bullets() -> dict[str, str]:
    """folder -> the text of its sub-bullet under `experiments/`."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^  - `(\w+)/`:(.*?)(?=^  - `|^- |\Z)", _layout(),
                                                         flags=re.M | re.S)}


def test_every_named_module_exists():
    bullets = _experiments_bullets()
    assert set(NAMED_FOLDERS) | {"runtime"} <= set(bullets)
    for folder, text in bullets.items():
        for name in re.findall(r"`([\w/]+\.py)`", text):
            assert (ROOT / "experiments" / folder / name).exists(), f"README layout: experiments/{folder}/{name}"
        for sub in re.findall(r"`(\w+)/`", text):
            assert (ROOT / "experiments" / folder / sub).is_dir(), f"README layout: experiments/{folder}/{sub}/"


def test_every_module_is_in_the_layout():
    bullets = _experiments_bullets()
    for folder in NAMED_FOLDERS:
        named = set(re.findall(r"`([\w]+\.py)`", bullets[folder])) | set(re.findall(r"`(\w+)/`", bullets[folder]))
        for path in sorted((ROOT / "experiments" / folder).iterdir()):
            if path.name.startswith("_") or path.name == "__pycache__" or path.suffix not in (".py", ""):
                continue
            assert path.name in named, f"experiments/{folder}/{path.name} is not in the README's layout section"

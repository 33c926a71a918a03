"""Finding stereo pairs and mono photos on disk, for each supported layout.

Layouts (``layout`` argument / ``data.layout`` config key):

=============  ===============================================================
``kitti2012``  ``.../colored_0/<name>.png`` with ``.../colored_1/<name>.png``
``kitti2015``  ``.../image_2/<name>.png`` with ``.../image_3/<name>.png``
``kitti_raw``  ``.../image_02/data/<name>.png`` with ``.../image_03/data/<name>.png``
``middlebury`` a folder holding ``im0.png`` and ``im1.png``
``instereo2k`` a folder holding ``left.png`` and ``right.png`` (InStereo2K)
``generic``    any folder holding ``left.png`` and ``right.png``
``auto``       all of the above
=============  ===============================================================

A split file lists pairs, one per line: ``LEFT RIGHT`` (two paths) or ``FOLDER`` (a folder
holding ``left.png``/``right.png`` or ``im0.png``/``im1.png``); relative paths are relative
to the data root; ``#`` starts a comment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from shared.data.images import IMAGE_EXTENSIONS, image_size
from shared.errors import DataError

log = logging.getLogger(__name__)

#: (left folder, right folder) pairs of the KITTI layouts, relative to a common parent.
_KITTI_DIRS = {
    "kitti2012": ("colored_0", "colored_1"),
    "kitti2015": ("image_2", "image_3"),
    "kitti_raw": ("image_02/data", "image_03/data"),
}
#: (left file, right file) names of the folder-per-pair layouts.
_FOLDER_FILES = {
    "generic": ("left.png", "right.png"),
    "instereo2k": ("left.png", "right.png"),
    "middlebury": ("im0.png", "im1.png"),
}
LAYOUTS = ("auto", *_KITTI_DIRS, *_FOLDER_FILES)


@dataclass(frozen=True)
class StereoPair:
    """Paths of a rectified stereo pair and a short name for reports."""

    left: Path
    right: Path
    name: str


def skip_or_raise(message: str, on_error: str) -> None:
    """Log ``message`` and go on when ``on_error`` is 'skip'; otherwise raise DataError."""
    if on_error == "skip":
        log.warning("skipping: %s", message)
        return
    raise DataError(message)


def _check_pair(pair: StereoPair, on_error: str) -> bool:
    """True when both files open and have the same size."""
    try:
        left_size, right_size = image_size(pair.left), image_size(pair.right)
    except DataError as exc:
        skip_or_raise(str(exc), on_error)
        return False
    if left_size != right_size:
        skip_or_raise(
            f"stereo pair size mismatch: {pair.left} is {left_size[1]}x"
            f"{left_size[0]} but {pair.right} is {right_size[1]}x{right_size[0]}",
            on_error,
        )
        return False
    return True


def _name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _kitti_pairs(
    root: Path, left_dir: str, right_dir: str, on_error: str
) -> list[StereoPair]:
    pairs = []
    depth = left_dir.count("/") + 1
    for left_folder in sorted(root.rglob(left_dir.split("/")[-1])):
        if not left_folder.is_dir() or not left_folder.as_posix().endswith(left_dir):
            continue
        parent = left_folder
        for _ in range(depth):
            parent = parent.parent
        right_folder = parent / right_dir
        for left in sorted(
            p for p in left_folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
        ):
            right = right_folder / left.name
            if not right.is_file():
                skip_or_raise(
                    f"missing right view for {left}: expected {right}", on_error
                )
                continue
            pairs.append(StereoPair(left, right, _name(left, root)))
    return pairs


def _folder_pairs(
    root: Path, left_name: str, right_name: str, on_error: str
) -> list[StereoPair]:
    pairs = []
    for left in sorted(root.rglob(left_name)):
        right = left.with_name(right_name)
        if not right.is_file():
            skip_or_raise(f"missing right view for {left}: expected {right}", on_error)
            continue
        pairs.append(StereoPair(left, right, _name(left.parent, root)))
    return pairs


def find_pairs(
    root: str | Path, layout: str = "auto", on_error: str = "error"
) -> list[StereoPair]:
    """All stereo pairs under ``root`` in the given layout, sorted by path.

    Raises :class:`DataError` for a missing root, a missing or unreadable view, or views
    of different sizes; with ``on_error='skip'`` such pairs are skipped with a warning.
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise DataError(
            f"unknown stereo layout {layout!r}; allowed: {', '.join(LAYOUTS)}"
        )
    if not root.is_dir():
        raise DataError(f"stereo data folder not found: {root}")
    found: dict[tuple[Path, Path], StereoPair] = {}
    for name, (left_dir, right_dir) in _KITTI_DIRS.items():
        if layout in ("auto", name):
            for pair in _kitti_pairs(root, left_dir, right_dir, on_error):
                found.setdefault((pair.left, pair.right), pair)
    for name, (left_name, right_name) in _FOLDER_FILES.items():
        if layout in ("auto", name):
            for pair in _folder_pairs(root, left_name, right_name, on_error):
                found.setdefault((pair.left, pair.right), pair)
    pairs = [p for _, p in sorted(found.items()) if _check_pair(p, on_error)]
    if not pairs:
        raise DataError(f"no stereo pairs of layout {layout!r} under {root}")
    return pairs


def _pair_in_folder(folder: Path) -> tuple[Path, Path] | None:
    for left_name, right_name in _FOLDER_FILES.values():
        if (folder / left_name).is_file():
            return folder / left_name, folder / right_name
    return None


def read_split(
    path: str | Path, root: str | Path = "", on_error: str = "error"
) -> list[StereoPair]:
    """Stereo pairs listed in a split file (format in the module docstring)."""
    path, root = Path(path), Path(root) if root else Path(".")
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"split file cannot be read: {path} ({exc})") from None
    pairs = []
    for number, line in enumerate(lines, start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) == 2:
            left, right = (root / f for f in fields)
            name = fields[0]
        elif len(fields) == 1:
            folder = root / fields[0]
            found = _pair_in_folder(folder) if folder.is_dir() else None
            if found is None:
                skip_or_raise(
                    f"{where}: no left.png/right.png or im0.png/im1.png in {folder}",
                    on_error,
                )
                continue
            (left, right), name = found, fields[0]
        else:
            raise DataError(f"{where}: expected 'LEFT RIGHT' or 'FOLDER', got {line!r}")
        for view in (left, right):
            if not view.is_file():
                skip_or_raise(f"{where}: image file not found: {view}", on_error)
                break
        else:
            pair = StereoPair(left, right, name)
            if _check_pair(pair, on_error):
                pairs.append(pair)
    if not pairs:
        raise DataError(f"split file lists no usable pairs: {path}")
    return pairs


def find_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursively), sorted; a missing root is an error."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    images = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not images:
        raise DataError(f"no images under {root}")
    return images


def exclude_pairs(
    pairs: list[StereoPair], excluded: list[StereoPair]
) -> list[StereoPair]:
    """``pairs`` without those whose left file is in ``excluded`` (e.g. the validation set)."""
    held_out = {p.left.resolve() for p in excluded}
    return [p for p in pairs if p.left.resolve() not in held_out]

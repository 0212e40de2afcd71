"""DCASE 2023/2024 attribute files: `<machine>/attributes_<XX>.csv`.

    file_name,d1p,d1v,d2p,d2v,...
    fan/train/section_00_source_train_normal_0000_m-n_X.wav,m-n,X,,

Each row names a clip and its attribute (parameter, value) pairs. File names usually carry
the same pairs (`..._m-n_X.wav`), and then the name is used as is. Where a name carries none
(`..._noAttribute.wav` in 2024, or a copy renamed by a user), the file supplies them, so
the auxiliary task's classes (`data.class_key`) stay as fine as the data allow.
"""

from __future__ import annotations

import csv
from pathlib import Path

from edge_agent.errors import EdgeAgentError

NO_ATTRIBUTE = "noAttribute"
"""What a 2024 clip without attributes has in its name and its attribute file."""


class AttributeFileError(EdgeAgentError):
    """An attribute file cannot be read (one line naming it)."""


def read_attribute_files(machine_dir: Path) -> dict[str, str]:
    """Clip file name -> attribute string (`p1_v1_p2_v2`) from every `attributes_*.csv` of
    one machine folder; {} when there are none."""
    out: dict[str, str] = {}
    for path in sorted(machine_dir.glob("attributes_*.csv")):
        try:
            with path.open(newline="") as fh:
                rows = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise AttributeFileError(f"{path}: unreadable attribute file ({exc})") from None
        if not rows or not rows[0] or rows[0][0].strip() != "file_name":
            raise AttributeFileError(f"{path}: expected a file_name,d1p,d1v,... header")
        for row in rows[1:]:
            if row and row[0].strip():
                out[Path(row[0].strip()).name] = attribute_string(row[1:])
    return out


def attribute_string(cells: list[str]) -> str:
    """(p1, v1, p2, v2, ...) -> `p1_v1_p2_v2`; empty and `noAttribute` pairs left out."""
    parts: list[str] = []
    for i in range(0, len(cells) - 1, 2):
        p, v = cells[i].strip(), cells[i + 1].strip()
        if p and p != NO_ATTRIBUTE:
            parts += [p, v] if v else [p]
    return "_".join(parts)


def name_has_attributes(attrs: str) -> bool:
    return bool(attrs) and attrs != NO_ATTRIBUTE

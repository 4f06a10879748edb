"""Build bookkeeping: records written, items skipped per reason with their first few paths."""

from __future__ import annotations

import dataclasses
import json

from stylecrafter_jax.errors import DataError

FIRST_PATHS = 5


class SkippedItem(DataError):
    """One source item that cannot be used; `reason` is the summary bucket it is counted in."""

    def __init__(self, reason: str, path: str, detail: str = ""):
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
        self.reason, self.path, self.detail = reason, path, detail


@dataclasses.dataclass
class BuildReport:
    """Counts of a build: written records, skipped items by reason, small images kept for upscaling."""

    written: int = 0
    upscaled: int = 0
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    first_paths: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    upscaled_paths: list[str] = dataclasses.field(default_factory=list)

    def skip(self, reason: str, path: str) -> None:
        """Counts one skipped item under `reason`, keeping the first few paths."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        paths = self.first_paths.setdefault(reason, [])
        if len(paths) < FIRST_PATHS:
            paths.append(path)

    def keep_small(self, path: str) -> None:
        """Counts one image or video below the minimum size that is kept and upscaled when read."""
        self.upscaled += 1
        if len(self.upscaled_paths) < FIRST_PATHS:
            self.upscaled_paths.append(path)

    @property
    def total_skipped(self) -> int:
        """Number of skipped items over all reasons."""
        return sum(self.skipped.values())

    def summary(self) -> str:
        """A few lines for a terminal: written, upscaled and skipped counts with first paths."""
        lines = [f"records written: {self.written}", f"files skipped: {self.total_skipped}"]
        for reason in sorted(self.skipped):
            lines.append(f"  {reason}: {self.skipped[reason]} (first: {', '.join(self.first_paths[reason])})")
        if self.upscaled:
            lines.append(f"below minimum size, kept to be upscaled: {self.upscaled} "
                         f"(first: {', '.join(self.upscaled_paths)})")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report as a JSON string (written next to the dataset)."""
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

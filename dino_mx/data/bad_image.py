"""What a dataset does with an image file it cannot read: ``data.on_bad_image``.

``raise`` (the default) stops with one line naming the file and the reason. ``skip`` logs
each unreadable path once, counts it and returns the next readable sample in file order
instead (index ``i + 1``, ``i + 2``, ... wrapping round). The replacement depends only on
which files are readable, never on a random draw, so a seeded run resumed from a checkpoint
sees the same samples as one that was never interrupted.

The record is per process: each DataLoader worker holds its own copy of the dataset, so with
``data.num_workers=W`` a bad path is logged at most once in each of the W workers (the
trainer's workers are persistent, so not again each epoch), and each warning carries that
process's running count. ``dino-mx data check`` lists every unreadable file at once.

Evaluation reads the data the same way: under ``skip`` an unreadable image's place is taken
by its neighbour (with that image's own label), so features stay paired with their labels but
that neighbour counts twice in the k-NN / linear-probe scores. Remove the files that
``dino-mx data check`` lists for exact numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dino_mx.config import OnBadImage

log = logging.getLogger(__name__)

ON_BAD_IMAGE = tuple(OnBadImage)  # the schema's choices: raise, skip

T = TypeVar("T")


def check_on_bad_image(value: str) -> str:
    """Return ``value`` when it is one of :data:`ON_BAD_IMAGE`.

    Raises:
        ValueError: Another value; the message lists the valid choices.
    """
    if value not in ON_BAD_IMAGE:
        raise ValueError(
            f"unknown data.on_bad_image '{value}'; valid choices: {', '.join(ON_BAD_IMAGE)}"
        )
    return value


def one_line(error: BaseException, path: object = None) -> str:
    """``str(error)`` on one line (PIL and tifffile messages may span several), less a quoted
    ``path`` (PIL repeats it) when the caller names the file already."""
    text = " ".join(str(error).split())
    if path is not None:
        text = text.replace(f" '{path}'", "").replace(f" {path}", "")
    return text or type(error).__name__


class BadImages:
    """Applies ``on_bad_image`` to the reads of one dataset and remembers the unreadable paths.

    Args:
        policy: ``"raise"`` or ``"skip"`` (see the module docstring).
        root: The dataset's folder, for the ``dino-mx data check`` hint of the error.

    Attributes:
        paths: Unreadable paths met so far in this process, in the order met.
        skipped: Samples replaced so far in this process (a path may be replaced many times).
    """

    def __init__(self, policy: str = "raise", root: str | Path | None = None) -> None:
        self.policy = check_on_bad_image(policy)
        self.root = root
        self.paths: dict[str, str] = {}  # path -> reason; a dict keeps the order met
        self.skipped = 0

    @property
    def count(self) -> int:
        """Number of distinct unreadable files met in this process."""
        return len(self.paths)

    def read(
        self, read: Callable[[int], T], index: int, n: int, path_of: Callable[[int], str]
    ) -> tuple[int, T]:
        """``(j, read(j))`` for ``j = index`` or, under ``skip``, the next readable index.

        Args:
            read: Reads sample ``j``; raises ``OSError`` or ``ValueError`` naming the file when
                it cannot.
            index: The sample asked for.
            n: Number of samples (the search wraps round).
            path_of: The file of sample ``j``, for the log and the record.

        Raises:
            OSError, ValueError: Under ``raise``, the first error, as one line naming the file
                and how to skip such files; under ``skip``, when no sample is readable.
        """
        for step in range(n):
            j = (index + step) % n
            path = path_of(j)
            if path in self.paths:
                continue
            try:
                value = read(j)
            except (OSError, ValueError) as error:
                reason = one_line(error)
                if self.policy == "raise":
                    kind = OSError if isinstance(error, OSError) else ValueError
                    raise kind(
                        f"{reason}; data.on_bad_image=skip skips such files, `dino-mx data check "
                        f"{self.root or 'DATASET'}` lists them all"
                    ) from error
                self.paths[path] = reason
                log.warning(
                    "skipping unreadable image (data.on_bad_image=skip, %d so far in this "
                    "process): %s",
                    self.count,
                    reason,
                )
                continue
            if step:
                self.skipped += 1
            return j, value
        first = next(iter(self.paths.values()), "no image at all")
        raise OSError(f"none of the {n} images is readable (data.on_bad_image=skip); {first}")

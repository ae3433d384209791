"""Word count over a folder of text files: map = count the words of one file, combine =
merge the counts.

    shoal job run examples.compute.wordcount:job      # a generated sample corpus
    SHOAL_WORDCOUNT_DIR=~/texts shoal job run examples.compute.wordcount:job

``Corpus`` is a user-defined ``Partitioner``: it lists the ``*.txt`` files of a folder
when the job is submitted, writing a small deterministic sample corpus into a temporary
folder first when no folder is given.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from pathlib import Path

from shoal.compute import Job, files

__all__ = ["Corpus", "count_words", "job", "make_job", "merge", "write_sample"]

_WORD = re.compile(r"[a-z']+")
_SAMPLE_TEXT = (
    "the quick brown fox jumps over the lazy dog while a shoal of fish swims past "
    "raft leader follower term log commit apply snapshot lease watch revision"
)
_VOCABULARY = _SAMPLE_TEXT.split()


def count_words(path: str) -> Counter[str]:
    with open(path, encoding="utf-8") as handle:
        return Counter(_WORD.findall(handle.read().lower()))


def merge(a: Counter[str], b: Counter[str]) -> Counter[str]:
    merged = Counter(a)
    merged.update(b)
    return merged


def write_sample(folder: Path, files_count: int = 16, words_per_file: int = 5000) -> Path:
    """Write a deterministic corpus (no randomness: word i of file f is fixed)."""
    folder.mkdir(parents=True, exist_ok=True)
    size = len(_VOCABULARY)
    for f in range(files_count):
        words = (_VOCABULARY[(i * (f + 3) + i // 7) % size] for i in range(words_per_file))
        (folder / f"part-{f:03d}.txt").write_text(" ".join(words) + "\n", encoding="utf-8")
    return folder


class Corpus:
    """The ``*.txt`` files of ``folder`` (default: a sample corpus in the temp folder)."""

    def __init__(self, folder: str | None = None) -> None:
        self.folder = folder

    def split(self) -> list[str]:
        folder = self.folder or os.environ.get("SHOAL_WORDCOUNT_DIR")
        if folder is None:
            sample = Path(tempfile.gettempdir()) / "shoal-wordcount-sample"
            folder = str(write_sample(sample))
        return files(os.path.join(folder, "*.txt"))


def make_job(folder: str | None = None) -> Job:
    return Job("wordcount", count_words, Corpus(folder), combine=merge)


job = make_job()

if __name__ == "__main__":
    print(job.run().result.most_common(10))

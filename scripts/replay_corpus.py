#!/usr/bin/env python
"""The pinned replay corpus: real code nobody here wrote, the same on every machine.

    .venv/bin/python scripts/replay_corpus.py            # prints the corpus folder (fetched once)
    .venv/bin/heedls replay "$(.venv/bin/python scripts/replay_corpus.py)" --cuts 2000 --seed 1 -o s1.jsonl

`scripts/replay-corpus.txt` names exact pure-Python wheels with their sha256 (pip's hash-checking
mode). They are downloaded from the package index once (pip, ~33 MB), their `*.py` files unpacked
side by side as in a site-packages folder (one replay project per top-level package), and cached in
the user cache directory under the list's own hash: a changed list is a new folder. A replay of the
venv's site-packages depends on what happens to be installed; a replay of this folder does not.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import platformdirs

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "scripts" / "replay-corpus.txt"
DONE = ".complete"  # written last: a folder without it is an interrupted fetch, fetched again


class CorpusError(Exception):
    """The corpus could not be fetched or unpacked (a one-line reason)."""


def corpus_dir(cache: Path, listing: Path = LIST) -> Path:
    digest = hashlib.sha256(listing.read_bytes()).hexdigest()[:12]
    return cache / f"replay-corpus-{digest}"


def prepare(cache: Path | None = None, listing: Path = LIST, quiet: bool = False) -> Path:
    """The unpacked corpus folder, fetched and unpacked first if it is not in the cache yet."""
    cache = cache or Path(platformdirs.user_cache_dir("heedls"))
    target = corpus_dir(cache, listing)
    if (target / DONE).is_file():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="heedls-corpus-", dir=cache) as tmp:
            wheels, unpacked = Path(tmp) / "wheels", Path(tmp) / "corpus"
            if not quiet:
                print(f"fetching the replay corpus ({_count(listing)} wheels) -> {target}", file=sys.stderr)
            _download(listing, wheels)
            unpacked.mkdir()
            for wheel in sorted(wheels.glob("*.whl")):
                _unpack_sources(wheel, unpacked)
            (unpacked / DONE).write_text(listing.read_text(encoding="utf-8"), encoding="utf-8")
            if target.exists() and not (target / DONE).is_file():  # an interrupted earlier fetch
                shutil.rmtree(target)
            try:
                unpacked.rename(target)
            except OSError:
                if not (target / DONE).is_file():  # else another process unpacked the same list meanwhile
                    raise
    except (OSError, zipfile.BadZipFile) as exc:
        raise CorpusError(f"cannot unpack the corpus into {cache}: {exc}") from exc
    return target


def _count(listing: Path) -> int:
    return sum(1 for line in listing.read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.lstrip().startswith("#"))


def _download(listing: Path, into: Path) -> None:
    # --require-hashes: exactly these files or nothing; pure wheels only, whatever this machine is
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--require-hashes", "--only-binary=:all:", "--platform", "any", "--python-version", "3.11",
               "--implementation", "py", "--dest", str(into), "-r", str(listing)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "ERROR" in line] or result.stderr.splitlines()[-3:]
        raise CorpusError("pip could not fetch the corpus: " + " / ".join(errors)[:600])
    fetched = len(list(into.glob("*.whl")))
    if fetched != _count(listing):
        raise CorpusError(f"pip fetched {fetched} wheels of the {_count(listing)} listed")


def _unpack_sources(wheel: Path, into: Path) -> None:
    """The wheel's Python files (no metadata, nothing outside `into`)."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            name = PurePosixPath(member.filename)
            if (member.is_dir() or name.suffix != ".py" or name.is_absolute() or ".." in name.parts
                    or any(part.endswith((".dist-info", ".data")) for part in name.parts)):
                continue
            path = into.joinpath(*name.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(member))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the corpus is kept (default: the user cache directory)")
    args = parser.parse_args()
    try:
        print(prepare(args.cache_dir))
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: the corpus is fetched again next time", file=sys.stderr)
        sys.exit(130)

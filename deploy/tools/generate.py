#!/usr/bin/env python3
"""Run every deploy generator; ``--check`` fails on any drift (what `make check-deploy` runs)."""

from __future__ import annotations

import argparse
import sys

import gen_config
import gen_k8s
import gen_kafkatopics
import gen_prometheusrule
import yaml
from _gen import ROOT, sync

GENERATORS = (gen_config, gen_k8s, gen_kafkatopics, gen_prometheusrule)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    failed = False
    for generator in GENERATORS:
        name = generator.__name__
        try:
            files = generator.render()
        except (ImportError, KeyError, ValueError, OSError, yaml.YAMLError) as exc:
            print(f"{name}: cannot generate: {exc}", file=sys.stderr)
            failed = True
            continue
        for path in sync(files, check=args.check):
            failed |= args.check
            print(f"{name}: {'out of date' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    if failed and args.check:
        print("run `python deploy/tools/generate.py` and commit the result", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

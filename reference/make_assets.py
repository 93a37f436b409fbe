"""Rebuild the embedded demo assets: `python -m reference.make_assets [--size 96]`.

Writes the demo MobileNetV2 weights (pretrained on a texture task, see weights.py)
and the synthetic flower TFRecords. The flowers are the same bytes every time; the
weights follow the same seeded recipe (CPU training is not bit-exact everywhere).
Both are committed, so a fresh machine needs neither this script nor any download.
"""

import argparse
import os
import shutil

from reference import data, weights

ASSETS = os.path.join(os.path.dirname(__file__), "assets")
DEMO_FLOWERS = os.path.join(ASSETS, "flowers-demo")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96, help="image size of the demo set")
    parser.add_argument("--count", type=int, default=320, help="number of demo flowers")
    parser.add_argument("--skip-weights", action="store_true")
    args = parser.parse_args(argv)
    shutil.rmtree(DEMO_FLOWERS, ignore_errors=True)
    paths = data.make_synthetic_flowers(DEMO_FLOWERS, args.size, args.count)
    print(f"wrote {len(paths)} TFRecord files to {DEMO_FLOWERS}")
    if not args.skip_weights:
        print("wrote", weights.make_demo_weights(weights.DEMO_WEIGHTS, size=args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

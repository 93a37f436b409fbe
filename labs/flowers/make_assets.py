"""Rebuild the flowers' demo assets: `python -m labs.flowers.make_assets`.

Writes the demo MobileNetV2 weights (pretrained on a texture task, see pretrain.py) and
the synthetic flowers, as TFRecords (at every size in flowers.DEMO_SIZES) and as JPEG
folders. The flowers are the same bytes
every time; the weights follow the same seeded recipe (CPU training is not bit-exact
everywhere). All are committed, so a fresh machine needs neither this script nor any
download.
"""

import argparse
import shutil

from labs import flowers
from labs.flowers import pretrain


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=480, help="number of demo flowers in the TFRecords (16 files)")
    parser.add_argument("--photos", type=int, default=240, help="number of demo photos in the JPEG folders (varied sizes)")
    parser.add_argument("--skip-weights", action="store_true")
    args = parser.parse_args(argv)
    for folder in (*map(flowers.demo_tfrecords, flowers.DEMO_SIZES), flowers.DEMO_JPEGS):
        shutil.rmtree(folder, ignore_errors=True)
    for size in flowers.DEMO_SIZES:
        folder = flowers.demo_tfrecords(size)
        paths = flowers.make_synthetic_flowers(folder, size, args.count)
        print(f"wrote {len(paths)} TFRecord files to {folder}")
    paths = flowers.make_flower_folders(flowers.DEMO_JPEGS, args.photos)
    print(f"wrote {len(paths)} JPEG files to {flowers.DEMO_JPEGS}")
    if not args.skip_weights:
        print("wrote", pretrain.make_demo_weights(flowers.DEMO_WEIGHTS, size=96))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`lenet-tf predict` on damaged TIFF files: one line of ours per file, none of libtiff's, libjpeg's or PIL's."""

import subprocess
import sys

import numpy as np
from PIL import Image


def damaged_tiffs(folder) -> list:
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    picture = Image.fromarray(digit).resize((56, 56))
    paths = []
    for compression in ("jpeg", "tiff_lzw", "packbits"):  # each wakes a different library's own messages
        whole = folder / f"whole-{compression}.tif"
        picture.save(whole, compression=compression)
        paths.append(folder / f"cut-{compression}.tif")
        paths[-1].write_bytes(whole.read_bytes()[:-10])
    return paths


def test_predict_prints_only_its_own_lines_for_damaged_tiffs(tmp_path, real_model_dir):
    paths = damaged_tiffs(tmp_path)
    done = subprocess.run([sys.executable, "-m", "lenet_tf", "predict", "--checkpoint", str(real_model_dir[0]),
                           *map(str, paths)], capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    for foreign in ("TIFF", "JPEGLib", "Warning", "warnings.warn", "<_io"):
        assert foreign not in output, output
    for path in paths:
        assert sum(f"{path}: not a readable image" in line for line in output.splitlines()) == 1, output
    assert done.returncode != 0

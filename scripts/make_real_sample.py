"""Make sample_data/epu_* from ../shared/data/real (see sample_data/README.md, SOURCES.md there).

A 320 × 320 crop (rows/cols 0–319) of the ×6 Fourier-binned real EPU micrograph
(mrcfile_fei-extended_bin6.mrc, 5.12265 Å/px) and the picked particles whose centre lies inside it
(box 64, from fei-extended_picked105_bin6_box64.{mrcs,star}), with their STAR rows kept verbatim
except rlnImageName.  Run from the repository root: python scripts/make_real_sample.py [--force]
"""
import sys
from pathlib import Path

import numpy as np

from cryoxplain.io.mrc import read_mrc, write_mrc
from cryoxplain.io.star import read_star, rewrite_star_text

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
OUT = Path(__file__).resolve().parents[1] / "sample_data"
CROP = 320
force = "--force" in sys.argv

mic, px = read_mrc(REAL / "mrcfile_fei-extended_bin6.mrc")
write_mrc(OUT / "epu_bin6_crop.mrc", mic[:CROP, :CROP], px, force=force)
star_path = REAL / "fei-extended_picked105_bin6_box64.star"
t = read_star(star_path)["particles"]
x = (np.asarray(t["rlnCoordinateX"], float) - 1) / 6  # binned pixels (crop offset 1 col, 5 rows, then ×6)
y = (np.asarray(t["rlnCoordinateY"], float) - 5) / 6
keep = np.flatnonzero((x >= 32) & (x < CROP - 32) & (y >= 32) & (y < CROP - 32))
stack, spx = read_mrc(REAL / "fei-extended_picked105_bin6_box64.mrcs")
write_mrc(OUT / "epu_particles.mrcs", stack[keep], spx, kind="stack", force=force)
text = star_path.read_text()
names = [f"{k + 1:06d}@epu_particles.mrcs" if i in set(keep.tolist()) else None for k, i in
         zip(np.cumsum(np.isin(np.arange(t.n_rows), keep)) - 1, range(t.n_rows))]
# rlnMicrographName and the coordinates stay those of the original micrograph
text = rewrite_star_text(text, {("particles", "rlnImageName"): [n or "DROP" for n in names]})
lines = [ln for ln in text.splitlines(keepends=True) if "DROP" not in ln]
dst = OUT / "epu_particles.star"
if dst.exists() and not force:
    sys.exit(f"{dst} exists; pass --force")
dst.write_text("".join(lines))
print(f"{len(keep)} particles; crop {CROP}x{CROP} at {px:g} Å/px")

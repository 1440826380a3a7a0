"""ASPIRE's covariance Wiener filter (CWF, Bhamre et al., J. Struct. Biol. 195:72, 2016) on one
stack — run by benchmarks/real_data.py inside ASPIRE's own environment (``pip install aspire``;
GPL-3, a benchmark-only peer, never imported by cryoxplain).

    python _aspire_cwf.py IN.mrcs OUT.mrcs PIXEL_SIZE [--ctf CTF.npz]

``CTF.npz`` (optional): per-image ``defocus_u``, ``defocus_v`` (Å), ``defocus_angle`` (rad) and
scalars ``voltage``, ``cs``, ``amplitude_contrast``.  With a CTF, CWF estimates the CTF-corrected
image; the output is re-multiplied by each image's CTF (ASPIRE's own filter, so its sign
convention cancels) so that it estimates the same CTF-modulated image a denoiser returns.
The fit (mean, covariance, noise variance by ASPIRE's WhiteNoiseEstimator) uses the stack itself.
"""
import sys

import mrcfile
import numpy as np
from aspire.denoising import DenoiserCov2D
from aspire.image import Image
from aspire.operators import CTFFilter
from aspire.source import ArrayImageSource


def main(argv):
    src_path, out_path, px = argv[0], argv[1], float(argv[2])
    ctf = None
    if "--ctf" in argv:
        ctf = np.load(argv[argv.index("--ctf") + 1])
    with mrcfile.open(src_path, permissive=True) as m:
        ims = np.asarray(m.data, dtype=np.float64)
    src = ArrayImageSource(Image(ims, pixel_size=px), pixel_size=px)
    filters = None
    if ctf is not None:
        filters = [CTFFilter(voltage=float(ctf["voltage"]), defocus_u=float(u), defocus_v=float(v),
                             defocus_ang=float(a), Cs=float(ctf["cs"]), alpha=float(ctf["amplitude_contrast"]))
                   for u, v, a in zip(ctf["defocus_u"], ctf["defocus_v"], ctf["defocus_angle"])]
        src.unique_filters = filters
        src.filter_indices = np.arange(len(filters))
    den = DenoiserCov2D(src)
    out = den.denoise[:].asnumpy()
    if filters is not None:
        out = np.stack([Image(out[i:i + 1], pixel_size=px).filter(f).asnumpy()[0] for i, f in enumerate(filters)])
    with mrcfile.new(out_path, overwrite=True) as m:
        m.set_data(out.astype(np.float32))
        m.set_image_stack()
        m.voxel_size = px


if __name__ == "__main__":
    main(sys.argv[1:])

"""``cryoxplain simulate``: particle stacks with exact ground truth (thin wrapper over
:func:`cryoxplain.sim.simulate_particles` and :func:`cryoxplain.sim.write_simulation`)."""
from __future__ import annotations

import math
from fractions import Fraction

import click

from .common import batch_size_option, device_option, force_option, pixel_size_callback, seed_option


class SnrType(click.ParamType):
    """A positive number, a fraction such as ``1/64``, or ``none``."""

    name = "SNR"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) or value is None:
            return value
        text = str(value).strip().lower()
        if text in ("none", "inf", "off"):
            return None
        try:
            v = float(Fraction(text))
        except (ValueError, ZeroDivisionError):
            self.fail(f"{value!r} is not a number, a fraction like 1/64, or 'none'", param, ctx)
        if not (v > 0 and math.isfinite(v)):
            self.fail(f"SNR must be > 0, got {value}", param, ctx)
        return v


@click.command("simulate", context_settings={"show_default": True})
@click.argument("source", required=False)
@click.option("--phantom", is_flag=True, help="Use the built-in procedural phantom instead of SOURCE.")
@click.option("-o", "--output", "prefix", required=True,
              help="Output prefix: writes PREFIX_clean.mrcs, PREFIX_noisy.mrcs[, PREFIX_noisy2.mrcs], PREFIX.star, PREFIX.h5.")
@click.option("-n", "--num-particles", "n", type=click.IntRange(min=1), default=1000, help="Number of particles.")
@click.option("--box", type=click.IntRange(min=8), default=None, help="Box size in pixels [default: the density's box].")
@click.option("--pixel-size", "--apix", "--angpix", "pixel_size", type=float, default=None, callback=pixel_size_callback,
              help="Pixel size in Å. Required for atomic models and for maps whose header voxel size is 0; "
                   "resamples a map with a different voxel size. Phantom default: 1.")
@click.option("--snr", type=SnrType(), default="1/4", show_default="1/4; none with --dose",
              help="Signal-to-noise ratio of the additive Gaussian noise "
              "(variance of the clean image over the box's inscribed disc / noise variance); e.g. 0.25, 1/64, none. "
              "With --dose and no --snr only shot noise is added.")
@click.option("--noise-scale", type=click.Choice(["image", "stack"]), default="image",
              help="σ per image (every image at the SNR) or one σ for the stack (SNR met on average).")
@click.option("--dose", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Add Poisson shot noise at this dose (e⁻/Å²); Gaussian noise is added on top only when --snr is given.")
@click.option("--contrast", type=click.FloatRange(min=0, max=1, min_open=True), default=0.1,
              help="Image contrast for the Poisson model (with --dose).")
@click.option("--paired", is_flag=True, help="Also write a second, independent noisy copy (Noise2Noise).")
@click.option("--ctf", "use_ctf", is_flag=True, help="Apply a CTF with a random defocus per particle.")
@click.option("--defocus-min", type=float, default=10000.0, help="Min defocus (Å, underfocus positive), with --ctf.")
@click.option("--defocus-max", type=float, default=25000.0, help="Max defocus (Å), with --ctf.")
@click.option("--astigmatism", type=float, default=0.0, help="DefocusU − DefocusV (Å), with --ctf.")
@click.option("--voltage", type=float, default=300.0, help="Acceleration voltage (kV), with --ctf.")
@click.option("--cs", type=float, default=2.7, help="Spherical aberration (mm), with --ctf.")
@click.option("--amplitude-contrast", "--ac", "amplitude_contrast", type=float, default=0.1,
              help="Amplitude contrast fraction, with --ctf.")
@click.option("--bfactor", type=float, default=0.0, help="CTF B-factor envelope (Å²), with --ctf.")
@click.option("--sigma", "atom_sigma", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Gaussian width per atom (Å) for atomic models [default: max(1 Å, pixel size)].")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", help="Data type of the MRC stacks.")
@seed_option
@force_option
@device_option
@batch_size_option
def simulate(source, phantom, prefix, n, box, pixel_size, snr, noise_scale, dose, contrast, paired, use_ctf,
             defocus_min, defocus_max, astigmatism, voltage, cs, amplitude_contrast, bfactor, atom_sigma, dtype,
             seed, force, device, batch_size):
    """Simulate particle images of SOURCE (PDB/mmCIF atomic model, MRC map, or --phantom) at
    uniformly random orientations, with exact clean ground truth and per-particle metadata.

    \b
    Examples:
      cryoxplain simulate --phantom -n 500 --box 64 --snr 1/4 -o sim/phantom
      cryoxplain simulate map.mrc --pixel-size 5 -n 2000 --box 64 --snr 1/64 --paired -o sim/ribo
      cryoxplain simulate model.cif --pixel-size 1.5 --box 128 --ctf --dose 40 -o sim/model
    """
    from pathlib import Path

    from ..errors import ParameterError
    from ..sim import CTFParams, load_density, simulate_to_files
    from ..sim.simulate import simulation_paths
    from ..io.atomic import check_output, made_folders
    from ..utils import resolve_device

    if phantom == bool(source):
        raise ParameterError("give exactly one density: a SOURCE file (PDB/mmCIF/MRC) or --phantom")
    ctx = click.get_current_context()
    if dose and ctx.get_parameter_source("snr") == click.core.ParameterSource.DEFAULT:
        snr = None  # --dose alone: shot noise only (docs/simulate.md)
    dev = resolve_device(device)
    # refuse existing outputs before any work is done
    for p in simulation_paths(prefix, paired=paired, ctf=use_ctf).values():
        check_output(p, force=force, inputs=(source,) if source else (), folder_must_exist=False)
    if phantom:
        density = load_density("phantom", pixel_size or 1.0, box=box or 64, seed=seed)
    else:
        density = load_density(source, pixel_size, box=box, sigma=atom_sigma)
    ctf = None
    if use_ctf:
        ctf = CTFParams(defocus_min=defocus_min, defocus_max=defocus_max, astigmatism=astigmatism, voltage=voltage,
                        cs=cs, amplitude_contrast=amplitude_contrast, bfactor=bfactor)
    from tqdm.auto import tqdm

    # a bar on stderr (only on a terminal), moved every chunk of batch_size particles
    with made_folders(Path(prefix).parent), tqdm(total=n, desc="simulate", unit="particle", disable=None) as bar:
        # -o sim/ribo creates sim/ (removed again on failure)
        def progress(done, total):
            bar.update(done - bar.n)

        paths, meta, params = simulate_to_files(
            density, n, prefix, box=box, pixel_size=None, snr=snr, seed=seed, ctf=ctf, dose=dose, paired=paired,
            noise_scale=noise_scale, contrast=contrast, device=str(dev), batch_size=batch_size, dtype=dtype,
            force=force, inputs=(source,) if source else (), chunk=max(batch_size, 16), progress=progress)
    snr_m = meta["snr_measured"]
    click.echo(f"simulated {n} particles, box {params['box']} px, pixel size {params['pixel_size']:g} Å, "
               f"seed {seed}; measured SNR mean {snr_m.mean():.4g} (Gaussian-noise SNR requested: "
               f"{snr if snr is not None else 'none'}"
               f"{', plus Poisson noise at dose ' + format(dose, 'g') + ' e/Å²' if dose else ''})")
    for key, p in paths.items():
        click.echo(f"  {key:10s} {p}")

"""``cryoxplain evaluate``: a group of evaluation commands (``snr``; others register one line each)."""
from __future__ import annotations

import json
import math

import click

from .common import LazyGroup, batch_size_option, force_option

# subcommand name -> "module:attribute" (module relative to cryoxplain.cli), imported lazily
SUBCOMMANDS: dict[str, str] = {
    "snr": "evaluate:snr",
    "equivariance": "evaluate_equivariance:equivariance",
}


class _LazySubgroup(LazyGroup):
    lazy_commands = SUBCOMMANDS


@click.group("evaluate", cls=_LazySubgroup)
def evaluate():
    """Evaluate denoisers: SNR/PSNR/FRC against ground truth, rotation equivariance, …"""


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def format_table(res: dict) -> str:
    """The human-readable table printed by ``evaluate snr``."""
    rows = [("images", res["n_images"]), ("mask (SNR, PSNR)", res["mask"])]
    if "snr_in" in res:
        rows += [("SNR_in (linear)", res["snr_in"]), ("SNR_in (dB)", res["snr_in_db"])]
    rows += [("SNR_out (linear)", res["snr_out"]), ("SNR_out (dB)", res["snr_out_db"])]
    if "snr_gain_db" in res:
        rows.append(("SNR gain (dB)", res["snr_gain_db"]))
    rows += [("PSNR (dB)", res["psnr_db"]), ("PSNR data range", res["psnr_data_range"])]
    for key in ("frc_0.5", "frc_0.143"):
        c = res[key]
        tag = "" if c["crossed"] else " (not crossed: ≥ Nyquist)"
        if c["resolution_A"] is not None:
            rows.append((f"FRC {c['threshold']} crossing", f"{c['frequency_per_A']:.4g} 1/Å = {c['resolution_A']:.4g} Å{tag}"))
        else:
            rows.append((f"FRC {c['threshold']} crossing", f"{c['frequency_per_px']:.4g} 1/px (pixel size unknown){tag}"))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {_fmt(v)}" for k, v in rows)


def plot_frc(res: dict, path, force: bool = False) -> None:
    """Write the FRC curve with its 0.5 and 0.143 lines as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io.atomic import atomic_path

    curve = res["frc_curve"]
    per_a = curve["frequency_per_A"] is not None
    f = curve["frequency_per_A"] if per_a else curve["frequency_per_px"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(f, curve["frc"], lw=1.5, label="FRC(clean, estimate)")
    for t, ls in ((0.5, "--"), (0.143, ":")):
        ax.axhline(t, color="grey", ls=ls, lw=1, label=f"{t}")
    ax.set_xlabel("spatial frequency (1/Å)" if per_a else "spatial frequency (1/px)")
    ax.set_ylabel("FRC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(f"FRC over {res['n_images']} image(s)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    with atomic_path(path, force=force) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


@click.command("snr")
@click.option("--clean", required=True, type=click.Path(dir_okay=False), help="Ground-truth (clean) image or stack.")
@click.option("--estimate", required=True, type=click.Path(dir_okay=False), help="Denoised image or stack.")
@click.option("--noisy", type=click.Path(dir_okay=False), help="The noisy input, for SNR_in and the gain.")
@click.option("--mask", type=click.Choice(["disc", "none"]), default="disc", show_default=True,
              help="Pixels used for SNR and PSNR: the disc inscribed in the box, or all.")
@click.option("--pixel-size", type=float, default=None, help="Å/pixel (default: from the clean file's header).")
@click.option("--data-range", type=float, default=None,
              help="PSNR data range (default: each clean image's max − min inside the mask).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (incl. the FRC curve) instead of the table.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write the FRC curve as a PNG here.")
@batch_size_option
@force_option
def snr(clean, estimate, noisy, mask, pixel_size, data_range, as_json, plot, batch_size, force):
    """SNR in/out (linear, dB), PSNR and FRC (0.5 / 0.143 crossings) of an estimate against ground truth.

    Library: cryoxplain.metrics.snr.evaluate_files.
    """
    from ..io.atomic import check_output
    from ..metrics.snr import evaluate_files

    if plot:
        check_output(plot, force=force)
    res = evaluate_files(clean, estimate, noisy=noisy, mask=mask, pixel_size=pixel_size, data_range=data_range,
                         batch_size=batch_size)
    if plot:
        plot_frc(res, plot, force=force)
    if as_json:
        click.echo(json.dumps(res, indent=1, default=lambda o: None))
    else:
        click.echo(format_table(res))
        if plot:
            click.echo(f"wrote {plot}")


__all__ = ["SUBCOMMANDS", "evaluate", "format_table", "plot_frc", "snr"]

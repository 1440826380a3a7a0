"""PNG figures of metric results (matplotlib, Agg backend; files written atomically).

* :func:`plot_frc` — an FRC curve with its 0.5 and 0.143 lines (``cryoxplain evaluate snr --plot``);
* :func:`plot_equivariance` — E(θ) (or a classifier's agreement and KL) against the angle, with the
  rotation floor (``cryoxplain evaluate equivariance --plot``);
* :func:`plot_training_histories` — score, losses and equivariance per epoch of several models.

Each takes a result (a :meth:`~cryoxplain.metrics.snr.DenoiseMetrics.result` dict or an
:class:`~cryoxplain.metrics.report.EquivarianceReport`) and a path; existing files are refused
unless ``force``.  matplotlib is imported only when a figure is drawn.
"""
from __future__ import annotations

__all__ = ["plot_frc", "plot_equivariance", "plot_training_histories", "plot_seed_histories"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, force: bool, inputs: tuple = ()) -> None:
    from ..io.atomic import atomic_path

    with atomic_path(path, force=force, inputs=inputs) as tmp:
        fig.savefig(tmp, format="png")
    _pyplot().close(fig)


def plot_frc(res: dict, path, force: bool = False, inputs: tuple = ()):
    """Write the FRC curve of ``res`` (``res["frc_curve"]``) with its 0.5 and 0.143 lines as a PNG."""
    plt = _pyplot()
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
    _save(fig, path, force, inputs)
    return path


def plot_equivariance(report, path, *, title: str | None = None, force: bool = False, inputs: tuple = ()):
    """PNG of the error (denoisers: E(θ), log scale; classifiers: agreement and KL) vs angle, with the floor."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ga, oa = sorted(report.grid), sorted(report.offgrid)
    if report.task == "classify":
        ax.plot(ga, [1 - report.grid[a]["agreement"] for a in ga], "s", color="C0", label="grid: 1 − agreement")
        ax.plot(oa, [1 - report.offgrid[a]["agreement"] for a in oa], "o", color="C0", mfc="none",
                label="off-grid: 1 − agreement")
        ax.plot(ga, [report.grid[a]["kl"] for a in ga], "s", color="C1", label="grid: KL (nats)")
        ax.plot(oa, [report.offgrid[a]["kl"] for a in oa], "o", color="C1", mfc="none", label="off-grid: KL (nats)")
        ax.set_ylabel("rotation non-invariance")
    else:
        ax.plot(ga, [max(report.grid[a], 1e-16) for a in ga], "s", color="C0", ms=7, label="E(θ), grid (exact rotation)")
        ax.plot(oa, [report.offgrid[a] for a in oa], "o", color="C0", mfc="none", label="E(θ), off-grid (FFT rotation)"
                if report.method == "fft" else "E(θ), off-grid (spline rotation)")
        ax.set_ylabel("equivariance error E(θ)")
    fa = [a for a in oa if a in report.floor]
    if fa:
        ax.plot(fa, [max(report.floor[a], 1e-16) for a in fa], "x", color="0.4", label="rotation floor (inputs)")
    ax.set_yscale("log")
    ax.set_xlabel("rotation angle θ (degrees)")
    ax.set_xlim(0, 360)
    ax.set_xticks(range(0, 361, 45))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"rotation equivariance ({report.n_images} images, {report.box}² box)", fontsize=10)
    fig.tight_layout()
    _save(fig, path, force, inputs)
    return path


def _finish_panels(fig, axes, path, title: str, force: bool):
    """Grid and legend on every panel, the figure title, and the PNG written (the epoch-history figures)."""
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path, force)
    return path


_HISTORY_STYLE = {"spiral": dict(color="C3"), "cartesian": dict(color="C0"), "steerable": dict(color="C2", ls="--")}


def plot_training_histories(histories: dict, path, *, title: str = "", force: bool = False):
    """PNG of per-epoch training histories of several models side by side (thesis Fig 7.7–7.9).

    ``histories``: ``{model name: {column: (E,) array}}`` with the columns ``epoch``,
    ``val_snr_out_db``, ``train_loss``, ``val_loss``, ``equivariance``, ``equivariance_grid`` (and
    optionally ``equivariance_reference``), as written by
    :class:`~cryoxplain.metrics.callbacks.EquivarianceCallback` and the denoiser training.
    Three panels: validation SNR_out, losses, equivariance error.
    """
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
    for name, h in histories.items():
        st = _HISTORY_STYLE.get(name, {})
        ep = h["epoch"]
        axes[0].plot(ep, h["val_snr_out_db"], marker="o", ms=3, label=name, **st)
        axes[1].plot(ep[1:], h["train_loss"][1:], marker=".", ms=3, alpha=0.6, label=f"{name} train",
                     **dict(st, ls=":"))
        axes[1].plot(ep, h["val_loss"], marker="o", ms=3, label=f"{name} val", **st)
        axes[2].plot(ep, h["equivariance"], marker="o", ms=3, label=f"{name} off-grid", **st)
        axes[2].plot(ep, np.maximum(h["equivariance_grid"], 1e-3), marker="s", ms=3, alpha=0.5,
                     label=f"{name} 90/180/270°", **dict(st, ls=":"))
    ref = next(iter(histories.values())).get("equivariance_reference")
    if ref is not None:
        axes[2].axhline(float(ref[0]), color="0.5", lw=1, ls="-.", label="isotropic-blur reference")
    axes[0].set(xlabel="epoch", ylabel="validation SNR_out (dB, disc)", title="denoising score")
    axes[1].set(xlabel="epoch", ylabel="MSE (normalised units)", title="loss", yscale="log")
    axes[2].set(xlabel="epoch", ylabel="equivariance error E", yscale="log",
                title="equivariance (values < 1e-3 drawn at 1e-3)")
    return _finish_panels(fig, axes, path, title, force)


def plot_seed_histories(histories: dict, path, *, title: str = "", force: bool = False):
    """PNG of per-epoch histories of several models over several seeds (the ``medium`` experiments).

    ``histories``: ``{model name: [history of seed 1, history of seed 2, ...]}``, each history a
    ``{column: (E,) array}`` as for :func:`plot_training_histories`.  Each curve is the mean over
    seeds; the shaded band spans the seeds' minimum to maximum.  Two panels: validation SNR_out and
    the equivariance error (off-grid solid, 90/180/270° dotted), with the isotropic-blur reference.
    """
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8), dpi=110)
    ref = None
    for name, hs in histories.items():
        st = _HISTORY_STYLE.get(name, {})
        ep = np.asarray(hs[0]["epoch"])
        n = len(hs)
        for ax, col, ls, lab, floor in ((axes[0], "val_snr_out_db", "-", "", None),
                                        (axes[1], "equivariance", "-", " off-grid", 1e-3),
                                        (axes[1], "equivariance_grid", ":", " 90/180/270°", 1e-3)):
            v = np.stack([np.asarray(h[col], dtype=np.float64) for h in hs])
            if floor is not None:
                v = np.maximum(v, floor)
            ax.plot(ep, v.mean(0), marker="o" if ls == "-" else "s", ms=3, label=f"{name}{lab} (mean of {n})",
                    **dict(st, ls=ls))
            ax.fill_between(ep, v.min(0), v.max(0), alpha=0.18 if ls == "-" else 0.08, color=st.get("color"))
        if ref is None and "equivariance_reference" in hs[0]:
            ref = float(np.mean([h["equivariance_reference"][0] for h in hs]))
    if ref is not None:
        axes[1].axhline(ref, color="0.5", lw=1, ls="-.", label="isotropic-blur reference")
    axes[0].set(xlabel="epoch", ylabel="validation SNR_out (dB, disc)", title="denoising score (band: min-max over seeds)")
    axes[1].set(xlabel="epoch", ylabel="equivariance error E", yscale="log",
                title="equivariance (band: min-max over seeds)")
    return _finish_panels(fig, axes, path, title, force)

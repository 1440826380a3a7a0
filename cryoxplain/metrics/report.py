"""Result records of the metrics and their human-readable forms (tables, JSON-ready dicts).

* :class:`EquivarianceReport` — what :func:`cryoxplain.metrics.equivariance.evaluate_equivariance`
  returns; ``to_dict()`` (JSON) and ``format_table()`` (stdout);
* :func:`format_snr_table` — the table of a :meth:`cryoxplain.metrics.snr.DenoiseMetrics.result`
  dict (what ``cryoxplain evaluate snr`` prints);
* :class:`NoGroundTruthReport` — what :func:`cryoxplain.evaluate.evaluate_real` returns (the
  no-ground-truth metrics of :mod:`cryoxplain.metrics.nogt`; ``cryoxplain evaluate real``).

Numbers in, text out: nothing here computes a metric, opens a file or draws.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["EquivarianceReport", "NoGroundTruthReport", "format_snr_table"]


@dataclass
class EquivarianceReport:
    """Result of :func:`~cryoxplain.metrics.equivariance.evaluate_equivariance`.

    ``task`` is ``denoise`` (``grid``/``offgrid``: ``{angle_deg: E}``) or ``classify``
    (``grid``/``offgrid``: ``{angle_deg: {"agreement", "kl"}}``).  ``floor``: ``{angle_deg:
    round-trip error of the rotation on the inputs}``; ``floor_output`` the same on ``F(x)``
    (denoisers only: the rotation is applied to the outputs in E).  ``window`` names the output
    window (applied before rotating), ``mask`` the optional evaluation mask applied after.
    ``summary`` gives the means and, as ``offgrid_std``, the spread (standard deviation over the
    off-grid angles).
    """

    task: str
    n_images: int
    box: int
    method: str
    grid: dict = field(default_factory=dict)
    offgrid: dict = field(default_factory=dict)
    floor: dict = field(default_factory=dict)
    floor_output: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    seed: int = 0
    mask: str = "none"
    window: str = "box default"

    @staticmethod
    def _mean(d: dict, key: str | None = None) -> float:
        vals = [v[key] if key else v for v in d.values()]
        return float(np.mean(vals)) if vals else float("nan")

    @staticmethod
    def _std(d: dict, key: str | None = None) -> float:
        vals = [v[key] if key else v for v in d.values()]
        return float(np.std(vals)) if vals else float("nan")

    @property
    def summary(self) -> dict[str, float]:
        if self.task == "classify":
            return {"grid_agreement": self._mean(self.grid, "agreement"), "grid_kl": self._mean(self.grid, "kl"),
                    "offgrid_agreement": self._mean(self.offgrid, "agreement"),
                    "offgrid_kl": self._mean(self.offgrid, "kl"),
                    "offgrid_agreement_std": self._std(self.offgrid, "agreement"),
                    "floor": self._mean({a: v for a, v in self.floor.items() if a in self.offgrid})}
        return {"grid": self._mean(self.grid), "offgrid": self._mean(self.offgrid),
                "offgrid_std": self._std(self.offgrid), "n_offgrid": len(self.offgrid),
                "floor": self._mean({a: v for a, v in self.floor.items() if a in self.offgrid}),
                "floor_output": self._mean({a: v for a, v in self.floor_output.items() if a in self.offgrid}),
                "reference": self._mean({a: v for a, v in self.reference.items() if a in self.offgrid})}

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("grid", "offgrid", "floor", "floor_output", "reference"):
            d[k] = {f"{a:g}": v for a, v in d[k].items()}
        d["summary"] = self.summary
        d["definition"] = ("E(theta) = ||W*F(R x) - R(W*F(x))|| / ||R(W*F(x))||, pooled over images, W the output "
                           "window (smooth disc inside the model's valid disc, applied before rotating); "
                           "floor = ||R_-theta R_theta (W*x) - W*x|| / ||W*x|| (floor_output: the same on F(x)); "
                           "reference = E(theta) of an isotropic Gaussian blur (sigma 1 px) on the same images and window; "
                           "offgrid_std = standard deviation of E over the off-grid angles")
        return d

    def rows(self) -> list[tuple]:
        """Table rows ``(kind, angle_deg, value, floor, floor_output, reference)`` in angle order."""
        rows = []
        for kind, d in (("grid", self.grid), ("off-grid", self.offgrid)):
            for a in sorted(d):
                rows.append((kind, a, d[a], self.floor.get(a, 0.0), self.floor_output.get(a, math.nan),
                             self.reference.get(a, math.nan)))
        return rows

    def format_table(self) -> str:
        lines = []
        s = self.summary
        if self.task == "classify":
            lines.append(f"{'set':<9}{'angle':>9}{'agreement':>11}{'KL(nats)':>11}{'floor(x)':>11}")
            for kind, a, v, fl, _, _ in self.rows():
                lines.append(f"{kind:<9}{a:>9.2f}{v['agreement']:>11.4f}{v['kl']:>11.3e}{fl:>11.3e}")
            lines.append(f"{'mean grid':<18}{s['grid_agreement']:>11.4f}{s['grid_kl']:>11.3e}{0.0:>11.3e}")
            lines.append(f"{'mean off-grid':<18}{s['offgrid_agreement']:>11.4f}{s['offgrid_kl']:>11.3e}{s['floor']:>11.3e}")
        else:
            lines.append(f"{'set':<9}{'angle':>9}{'E(theta)':>11}{'floor(x)':>11}{'floor(Fx)':>11}{'iso-ref':>11}")
            for kind, a, v, fl, flo, ref in self.rows():
                lines.append(f"{kind:<9}{a:>9.2f}{v:>11.4e}{fl:>11.3e}{flo:>11.3e}{ref:>11.3e}")
            lines.append(f"{'mean grid':<18}{s['grid']:>11.4e}{0.0:>11.3e}{0.0:>11.3e}{0.0:>11.3e}")
            lines.append(f"{'mean off-grid':<18}{s['offgrid']:>11.4e}{s['floor']:>11.3e}{s['floor_output']:>11.3e}"
                         f"{s['reference']:>11.3e}")
            lines.append(f"{'spread (sd)':<18}{s['offgrid_std']:>11.4e}   over {s['n_offgrid']} off-grid angles")
            lines.append("floor(x): rotation round trip on the inputs; floor(Fx): on the outputs; iso-ref: E of an "
                         "exactly equivariant isotropic blur (the metric's floor for a denoiser)")
        extra = "" if self.mask == "none" else f", {self.mask} mask"
        lines.append(f"({self.n_images} images, {self.box}x{self.box} box, output window {self.window}{extra}, "
                     f"rotation: {self.method})")
        return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def format_snr_table(res: dict) -> str:
    """The human-readable table of a :meth:`~cryoxplain.metrics.snr.DenoiseMetrics.result` dict."""
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
        if c.get("frequency_per_A") is not None and c["resolution_A"] is None:
            rows.append((f"FRC {c['threshold']} crossing", "below the threshold from the lowest ring (no resolution)"))
        elif c["resolution_A"] is not None:
            rows.append((f"FRC {c['threshold']} crossing", f"{c['frequency_per_A']:.4g} 1/Å = {c['resolution_A']:.4g} Å{tag}"))
        else:
            rows.append((f"FRC {c['threshold']} crossing", f"{c['frequency_per_px']:.4g} 1/px (pixel size unknown){tag}"))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {_fmt(v)}" for k, v in rows)


@dataclass
class NoGroundTruthReport:
    """Result of :func:`cryoxplain.evaluate.evaluate_real`: a denoiser judged without clean images.

    ``equivariance``: the :class:`EquivarianceReport` summary (``grid``, ``offgrid``, ``reference``
    …); ``j_invariant``: the J-invariant held-out loss of the model, the matched low-pass and the
    identity (its neighbour-mean blind-spot version); ``lowpass_sigma_px`` / ``half_gain_per_px``:
    the matched Gaussian low-pass and the model's half-gain frequency on the particles;
    ``contrast_sign``: ‖F(−x)+F(x)‖/‖F(x)‖; ``noise``: :func:`~cryoxplain.metrics.nogt.noise_response`
    on white noise (``white``) and on background patches of the micrograph (``background``);
    ``snr``: Topaz-style region SNR (dB) of the micrograph boxes at the picks, raw / model /
    low-pass (None without a micrograph and picks).  docs/metrics.md explains every number.
    """

    model: str
    stack: str
    n_images: int
    box: int
    pixel_size: float | None
    equivariance: dict = field(default_factory=dict)
    j_invariant: dict = field(default_factory=dict)
    j_spacing: int = 4
    lowpass_sigma_px: float = 0.0
    half_gain_per_px: float = math.nan
    contrast_sign: dict = field(default_factory=dict)
    noise: dict = field(default_factory=dict)
    snr: dict | None = None
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def format_table(self) -> str:
        eq = self.equivariance
        jv = self.j_invariant
        rows = [("images", f"{self.n_images} ({self.box}×{self.box} px"
                 + (f", {self.pixel_size:.4g} Å/px)" if self.pixel_size else ")")),
                ("equivariance E, 90/180/270° (mean)", eq.get("grid")),
                ("equivariance E, off-grid (mean ± sd)", f"{_fmt(eq.get('offgrid'))} ± {_fmt(eq.get('offgrid_std'))}"
                 f"   (iso-blur reference {_fmt(eq.get('reference'))})"),
                (f"J-invariant loss (grid {self.j_spacing}), model", jv.get("model")),
                ("  matched low-pass / identity (neighbour mean)", f"{_fmt(jv.get('lowpass'))} / {_fmt(jv.get('identity'))}"),
                ("matched low-pass σ (px); model half-gain (1/px)", f"{_fmt(self.lowpass_sigma_px)}; {_fmt(self.half_gain_per_px)}"),
                ("contrast-sign error ‖F(−x)+F(x)‖/‖F(x)‖", self.contrast_sign.get("model"))]
        for name, r in self.noise.items():
            if r is None:
                continue
            rows.append((f"{name} noise ({r['n_images']}): output/input energy, model", r["energy"]))
            rows.append(("  matched low-pass; model/low-pass", f"{_fmt(r['lowpass_energy'])}; {_fmt(r['energy_vs_lowpass'])}"
                         f"   (spectral excess {_fmt(r['spectrum_excess'])} at ring {r['spectrum_excess_ring']})"))
        if self.snr is not None:
            s = self.snr
            rows.append((f"region SNR (dB, {s['n_regions']} picks): raw / model / low-pass",
                         f"{_fmt(s['raw_db'])} / {_fmt(s['model_db'])} / {_fmt(s['lowpass_db'])}"))
        w = max(len(k) for k, _ in rows)
        lines = [f"{k:<{w}}  {_fmt(v)}" for k, v in rows]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

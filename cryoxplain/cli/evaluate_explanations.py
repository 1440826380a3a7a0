"""``cryoxplain evaluate explanations``: score explainers against ground truth, beside reference maps.

Thin wrapper over :func:`cryoxplain.evaluate.evaluate_explanations` (metrics:
:mod:`cryoxplain.explain.evaluation`, designs: :mod:`cryoxplain.sim.groundtruth`); the table is
:func:`cryoxplain.explain.evaluation.format_table`, the file
:func:`cryoxplain.evaluate.write_explanation_evaluation`.
"""
from __future__ import annotations

import json

import click

from .common import batch_size_option, device_option, force_option, input_files, seed_option


def _params(items) -> dict:
    """``["integrated_gradients.steps=16"]`` → ``{"integrated_gradients": {"steps": "16"}}``."""
    from ..errors import ParameterError

    out: dict = {}
    for it in items:
        if "=" not in it or "." not in it.split("=", 1)[0]:
            raise ParameterError(f"--param {it!r} must be METHOD.NAME=VALUE, e.g. integrated_gradients.steps=16")
        k, v = it.split("=", 1)
        m, name = k.split(".", 1)
        out.setdefault(m, {})[name] = v
    return out


@click.command("explanations")
@click.option("--design", default=None,
              help="A ground-truth design: p1, d1, d2, d3a (simulated, reproducible) or a design .h5 file "
                   "(cryoxplain.sim.groundtruth.write_design).")
@click.option("--model", "-m", default=None, help="Model file (.safetensors) or shipped model name (p1: its linear model).")
@click.option("--method", "methods", multiple=True, required=True, help="Explainer to evaluate (repeatable).")
@click.option("--param", "params", multiple=True, help="METHOD.NAME=VALUE explainer parameter (repeatable).")
@click.option("--target", default=None, help="Explained target (default: class:1 on D1/D2, the design's pixel target).")
@click.option("--n-images", "-n", type=click.IntRange(min=1), default=None, help="Images of the design used [default: all; d1/d2: 300].")
@click.option("--tolerance", "tolerances", type=click.FloatRange(min=0), multiple=True, default=(0, 2, 4, 6),
              show_default=True, help="Pointing-game tolerances in pixels (repeatable).")
@click.option("--baseline", "baselines", type=click.Choice(["zero", "noise", "blur", "mean"]), multiple=True,
              default=("zero", "noise"), show_default=True, help="Deletion/insertion baselines (repeatable).")
@click.option("--n-subsets", type=click.IntRange(min=2), default=200, show_default=True, help="MuFidelity subsets per image.")
@click.option("--no-references", is_flag=True, help="Skip the reference maps (random, centre, Sobel, intensity, oracle).")
@click.option("--sanity", is_flag=True, help="Also run the cascading model-randomisation test.")
@click.option("--sanity-final", is_flag=True,
              help="Also run the randomisation test, only its last step (every layer re-initialised): the same "
                   "sanity ρ as --sanity at two attributions per method instead of one per layer.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write maps and per-image metrics (HDF5).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of the table.")
@seed_option
@device_option
@batch_size_option
@force_option
def explanations(design, model, methods, params, target, n_images, tolerances, baselines, n_subsets, no_references,
                 sanity, sanity_final, output, as_json, seed, device, batch_size, force):
    """Pointing game (All/Diff), energy, rank accuracy, ROC-AUC, deletion/insertion (zero and noise
    baselines), MuFidelity, complexity and rotation-equivariance of each METHOD's explanations, with the
    reference maps' rows (random, smooth random, centre, Sobel, intensity, oracle) beside them.

    Library: cryoxplain.evaluate.evaluate_explanations.
    """
    from ..errors import ParameterError
    from ..evaluate import evaluate_explanations, write_explanation_evaluation
    from ..explain.evaluation import format_table
    from ..io.atomic import check_output

    if design is None:
        raise ParameterError("give --design (p1, d1, d2, d3a or a design .h5 file)")
    if output:
        check_output(output, force=force, inputs=input_files(model, design))
    res = evaluate_explanations(model, design, list(methods), params=_params(params), target=target, n_images=n_images,
                                references=not no_references, tolerances=tuple(tolerances), baselines=tuple(baselines),
                                n_subsets=n_subsets, sanity="final" if sanity_final and not sanity else sanity, seed=seed, device=device, batch_size=batch_size)
    if output:
        write_explanation_evaluation(res, output, force=force, inputs=input_files(model, design))
    if as_json:
        click.echo(json.dumps({k: res[k] for k in ("rows", "equivariance", "sanity", "info")}, indent=1,
                              default=lambda o: None))
    else:
        i = res["info"]
        click.echo(f"design {i['design']}  n={i['n']}  target {i['target']}  model {i['model']}"
                   + (f"  diff subset {i['diff_count']}" if i["diff_count"] is not None else ""))
        click.echo(format_table(res["rows"]))
        if output:
            click.echo(f"wrote {output}")

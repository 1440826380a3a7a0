"""The interactive ablation-path viewer: one self-contained HTML file (no network access).

For every explained image (at most ``max_images``) the page shows, for the path position
selected with a slider over t (end points included):

* the interpolated image x(t) actually fed to the model,
* the mask φ(t) (``hot`` colour map, white = ablated),
* the particle with the mask overlaid (ablated regions darkened and tinted blue),
* the score curve F(x(t)) of the path and of its complement (1 − φ(1 − t), or φ↓ for a
  boundary-straddling pair) with the current point marked, the area between them shaded,
* the heatmap and the run's trust indicators (saturation, convergence, class transition).

A "complement" checkbox switches all panels to the complementary path (the thesis's
"Contrast-masks" switch).  Images are embedded as PNG data URIs; the plot is inline SVG drawn by
a few lines of plain JavaScript.
"""
from __future__ import annotations

import base64
import html
import json
import struct
import zlib

import numpy as np
import torch
from matplotlib import colormaps

from cryoxplain.io.atomic import atomic_path

from .optimize import upsample


def png_bytes(img: np.ndarray) -> bytes:
    """Encode ``(H, W)`` or ``(H, W, 3)`` uint8 as PNG (8-bit grey or RGB)."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w = img.shape[:2]
    ctype = 0 if img.ndim == 2 else 2
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def data_uri(img: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


def _grey(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1) * 255).round().astype(np.uint8)


def _cmap(a: np.ndarray, name: str, lo: float, hi: float) -> np.ndarray:
    v = np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1)
    return (colormaps[name](v)[..., :3] * 255).round().astype(np.uint8)


def _overlay(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    g = grey.astype(np.float64) / 255
    m = np.clip(mask, 0, 1)[..., None]
    rgb = g[..., None] * (1 - 0.75 * m) + m * np.array([0.05, 0.1, 0.3])
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def _frames(x: np.ndarray, xb: np.ndarray, path: np.ndarray, lo: float, hi: float) -> dict:
    """PNG data URIs of x(t), φ(t) and the overlay for every sample of one path."""
    H, W = x.shape
    up = upsample(torch.as_tensor(path, dtype=torch.float64), (H, W)).numpy()
    g_tg = _grey(x, lo, hi)
    xs, ms, ov = [], [], []
    for m in up:
        xs.append(data_uri(_grey(x + m * (xb - x), lo, hi)))
        ms.append(data_uri(_cmap(m, "hot", 0.0, 1.0)))
        ov.append(data_uri(_overlay(g_tg, m)))
    return {"x": xs, "mask": ms, "overlay": ov}


def _num(v):
    """numpy → JSON-able Python; NaN/inf → None."""
    v = np.asarray(v)
    if v.dtype.kind == "f":
        v = v.astype(object)
        v[~np.isfinite(v.astype(float))] = None
        return v.item() if v.ndim == 0 else v.tolist()
    return v.item() if v.ndim == 0 else v.tolist()


def build_payload(attribution, inputs, max_images: int = 32) -> dict:
    """Everything the page needs, as JSON-serialisable data."""
    ex = attribution.extras
    if "path" not in ex or "baseline" not in ex:
        raise ValueError("this attribution carries no ablation path (extras 'path' and 'baseline' are needed)")
    x = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    x = x.astype(np.float32)
    if x.ndim == 4:
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    B = min(x.shape[0], attribution.maps.shape[0], max_images)
    images = []
    for b in range(B):
        xb = ex["baseline"][b]
        lo, hi = np.percentile(np.concatenate([x[b].ravel(), xb.ravel()]), [0.5, 99.5])
        main = ex["path"][b]
        comp = ex["path_down"][b] if "path_down" in ex else 1.0 - main[::-1]
        hm = attribution.maps[b]
        a = float(np.abs(hm).max()) or 1.0
        signed = bool(hm.min() < 0)
        heat = _cmap(hm, "RdBu_r", -a, a) if signed else _cmap(hm, "inferno", 0.0, a)
        info = {}
        for k in ("objective_initial", "objective_final", "saturation", "iterations", "converged", "t_transition",
                  "has_transition", "baseline_sigma", "baseline_changes_class", "score_is_probability"):
            if k in ex and np.ndim(ex[k]) >= 1:
                info[k] = _num(ex[k][b])
        images.append({
            "t": _num(ex["t"][b]),
            "curve": _num(ex["score_curve"][b]),
            "curve_c": _num(ex["score_curve_complement"][b]) if "score_curve_complement" in ex else None,
            "main": _frames(x[b], xb, main, lo, hi),
            "comp": _frames(x[b], xb, comp, lo, hi),
            "target": data_uri(_grey(x[b], lo, hi)),
            "baseline": data_uri(_grey(xb, lo, hi)),
            "heatmap": data_uri(heat),
            "info": info,
        })
    objective = attribution.params.get("objective", "")
    return {
        "method": attribution.method,
        "objective": objective,
        "comp_label": "φ↓ (straddling twin)" if objective == "straddle" else "complement 1 − φ(1 − t)",
        "target": attribution.target,
        "model": attribution.model,
        "params": {k: v for k, v in attribution.params.items()},
        "n_total": int(x.shape[0]),
        "images": images,
    }


_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>Ablation path viewer</title>
<style>
body{font-family:system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
h1{font-size:1.25em;margin:0 0 4px} .sub{color:#555;font-size:.9em;margin-bottom:10px}
.row{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0;text-align:center} figcaption{font-size:.85em;color:#444;margin-top:3px}
figure img{width:200px;height:200px;image-rendering:pixelated;border:1px solid #bbb;background:#000}
.ctl{margin:12px 0;display:flex;gap:18px;align-items:center;flex-wrap:wrap}
#t-slider{width:360px} #readout{font-family:monospace;font-size:1em;white-space:pre}
table{border-collapse:collapse;font-size:.85em} td{padding:1px 8px;border-bottom:1px solid #ddd}
svg text{font-size:11px;fill:#333}
</style></head><body>
<h1>Ablation path viewer</h1>
<div class="sub" id="subtitle"></div>
<div class="ctl">
 <label>image <select id="img-select"></select></label>
 <label>t <input type="range" id="t-slider" min="0" max="1" step="1" value="0"></label>
 <label><input type="checkbox" id="comp-toggle"> show <span id="comp-label"></span></label>
 <span id="readout"></span>
</div>
<div class="row">
 <figure><img id="img-xt" alt="x(t)"><figcaption>x(t) = x + φ(t)(x<sub>BL</sub> − x), fed to the model</figcaption></figure>
 <figure><img id="img-mask" alt="mask"><figcaption>mask φ(t) (white = ablated)</figcaption></figure>
 <figure><img id="img-overlay" alt="overlay"><figcaption>particle, ablated part darkened</figcaption></figure>
 <figure><svg id="score-plot" width="360" height="220" viewBox="0 0 360 220"></svg>
  <figcaption>score F(x(t)) along the path; dot = current t</figcaption></figure>
</div>
<div class="row" style="margin-top:14px">
 <figure><img id="img-target" alt="target"><figcaption>particle x (t = 0)</figcaption></figure>
 <figure><img id="img-baseline" alt="baseline"><figcaption>baseline x<sub>BL</sub> (t = 1)</figcaption></figure>
 <figure><img id="img-heatmap" alt="heatmap"><figcaption>heatmap (higher = more salient)</figcaption></figure>
 <div><table id="info"></table></div>
</div>
<script id="payload" type="application/json">__PAYLOAD__</script>
<script>
"use strict";
const P = JSON.parse(document.getElementById('payload').textContent);
const S = {img: 0, k: 0, comp: false};
const $ = id => document.getElementById(id);
const NS = 'http://www.w3.org/2000/svg';
const PX0 = 44, PX1 = 350, PY0 = 12, PY1 = 190;
function el(tag, attrs, parent){const e=document.createElementNS(NS,tag);for(const k in attrs)e.setAttribute(k,attrs[k]);parent.appendChild(e);return e;}
function yRange(d){let v=d.curve.slice(); if(d.curve_c) v=v.concat(d.curve_c);
  let lo=Math.min(...v), hi=Math.max(...v); if(d.info.score_is_probability){lo=Math.min(lo,0);hi=Math.max(hi,1);}
  if(hi-lo<1e-9){hi+=0.5;lo-=0.5;} return [lo,hi];}
function sx(t){return PX0+(PX1-PX0)*t;}
function sy(v,r){return PY1-(PY1-PY0)*(v-r[0])/(r[1]-r[0]);}
function drawPlot(){
  const d=P.images[S.img], svg=$('score-plot'); svg.innerHTML=''; const r=yRange(d);
  el('rect',{x:PX0,y:PY0,width:PX1-PX0,height:PY1-PY0,fill:'#fff',stroke:'#999'},svg);
  for(const f of [0,0.5,1]){const v=r[0]+f*(r[1]-r[0]);
    el('text',{x:PX0-4,y:sy(v,r)+4,'text-anchor':'end'},svg).textContent=v.toPrecision(3);
    el('text',{x:sx(f),y:PY1+14,'text-anchor':'middle'},svg).textContent=f;}
  el('text',{x:(PX0+PX1)/2,y:PY1+28,'text-anchor':'middle'},svg).textContent='t (mass of the mask)';
  const pts=c=>d.t.map((t,i)=>sx(t)+','+sy(c[i],r)).join(' ');
  if(d.curve_c){
    const poly=d.t.map((t,i)=>sx(t)+','+sy(d.curve[i],r)).concat(d.t.slice().reverse().map((t,j)=>{const i=d.t.length-1-j;return sx(t)+','+sy(d.curve_c[i],r);}));
    el('polygon',{points:poly.join(' '),fill:'#8fb3e0','fill-opacity':0.3,stroke:'none'},svg);
    el('polyline',{id:'curve-comp',points:pts(d.curve_c),fill:'none',stroke:'#d9822b','stroke-width':1.5,'stroke-dasharray':'4 3'},svg);}
  el('polyline',{id:'curve-main',points:pts(d.curve),fill:'none',stroke:'#1f5fa8','stroke-width':2},svg);
  el('line',{id:'marker-line',y1:PY0,y2:PY1,stroke:'#c00','stroke-width':1},svg);
  el('circle',{id:'marker',r:5,fill:'#c00',stroke:'#fff','stroke-width':1.5},svg);
}
function update(){
  const d=P.images[S.img], k=S.k, fr=S.comp?d.comp:d.main, c=(S.comp&&d.curve_c)?d.curve_c:d.curve, r=yRange(d);
  $('img-xt').src=fr.x[k]; $('img-mask').src=fr.mask[k]; $('img-overlay').src=fr.overlay[k];
  const m=$('marker'), ml=$('marker-line'); const X=sx(d.t[k]), Y=sy(c[k],r);
  m.setAttribute('cx',X); m.setAttribute('cy',Y); ml.setAttribute('x1',X); ml.setAttribute('x2',X);
  m.setAttribute('fill',S.comp?'#d9822b':'#c00');
  $('readout').textContent='t = '+d.t[k].toFixed(3)+'   F(x(t)) = '+c[k].toPrecision(4)+(S.comp?'  ['+P.comp_label+']':'');
}
function selectImage(i){
  S.img=i; const d=P.images[i]; const s=$('t-slider'); s.max=d.t.length-1; if(S.k>d.t.length-1)S.k=0; s.value=S.k;
  $('img-target').src=d.target; $('img-baseline').src=d.baseline; $('img-heatmap').src=d.heatmap;
  const tb=$('info'); tb.innerHTML='';
  for(const k in d.info){const tr=document.createElement('tr');const a=document.createElement('td');a.textContent=k.replace(/_/g,' ');
    const b=document.createElement('td');const v=d.info[k];b.textContent=(typeof v==='number'&&!Number.isInteger(v))?v.toPrecision(4):String(v);
    tr.appendChild(a);tr.appendChild(b);tb.appendChild(tr);}
  drawPlot(); update();
}
$('subtitle').textContent=P.method+' · objective '+P.objective+' · target '+P.target+(P.model?' · model '+P.model:'')
  +(P.n_total>P.images.length?' · showing '+P.images.length+' of '+P.n_total+' images':'');
$('comp-label').textContent=P.comp_label;
P.images.forEach((d,i)=>{const o=document.createElement('option');o.value=i;o.textContent='#'+i;$('img-select').appendChild(o);});
$('img-select').addEventListener('change',e=>selectImage(+e.target.value));
$('t-slider').addEventListener('input',e=>{S.k=+e.target.value;update();});
$('comp-toggle').addEventListener('change',e=>{S.comp=e.target.checked;update();});
selectImage(0);
</script></body></html>
"""


def render_html(attribution, inputs, max_images: int = 32) -> str:
    payload = build_payload(attribution, inputs, max_images)
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=_num)
    text = text.replace("</", "<\\/")          # never close the <script> element early
    return _PAGE.replace("__PAYLOAD__", text).replace("<title>Ablation path viewer</title>",
                                                      f"<title>Ablation path viewer – {html.escape(attribution.target)}</title>")


def write_viewer(attribution, inputs, path, max_images: int = 32, force: bool = True) -> None:
    """Write the viewer page for ``attribution`` (inputs ``(B, 1, H, W)`` or ``(B, H, W)``) atomically."""
    text = render_html(attribution, inputs, max_images)
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")

"""docs/segmentation.png: synthetic images, gradient saliency, GrabCut masks."""
import jax, numpy as np
import sr_jax
from sr_jax import files, viz
from sr_jax.core.models import as_function
from sr_jax.data import synthetic
from sr_jax.interpret import segment

model, variables = sr_jax.load_model("demo_vgg")
f, params = as_function(model, variables)
rows = []
for i in range(4):
  image, label, truth = synthetic.sample(synthetic.SAMPLE_SEED, i)
  x = sr_jax.preprocess(image, arch="demo_vgg")
  grad = jax.grad(lambda x: f(params, x)[0, label])(x)[0]
  saliency = np.abs(np.asarray(grad)).max(axis=-1)   # Simonyan et al.'s map
  seg = segment(image, saliency)
  shown = np.where(seg.mask[..., None], image, image // 4)
  iou = (seg.mask & truth).sum() / (seg.mask | truth).sum()
  rows.append([(["input", synthetic.CLASS_NAMES[label]], image),
               (["gradient saliency", ""], viz.heat(saliency, normalize=True)),
               (["GrabCut mask", f"IoU {iou:.2f} (parts)"], shown)])
files.save_png("docs/segmentation.png", viz._grid(rows, box=128, title=None))

"""Write notebooks/first_pytorch_classifier.ipynb from the cells below (no outputs, stable ids).

The notebook is the artefact users open; this script is its reviewable source. Edit the cells here,
run ``.venv/bin/python scripts/make_notebook.py`` and commit both files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

OUT = Path(__file__).resolve().parent.parent / "notebooks" / "first_pytorch_classifier.ipynb"

# (kind, source[, tags]); kind "md" or "code"
CELLS: list[tuple[str, str] | tuple[str, str, list[str]]] = []


def md(source: str) -> None:
    """Append a markdown cell."""
    CELLS.append(("md", source.strip("\n")))


def code(source: str, tags: list[str] | None = None) -> None:
    """Append a code cell."""
    CELLS.append(("code", source.strip("\n"), tags or []))


md("""
# Training a classifier

This is the official PyTorch tutorial
[Training a Classifier](https://pytorch.org/tutorials/beginner/blitz/cifar10_tutorial.html),
step by step, written with `jupyter_torchlab` so that it runs anywhere: on a laptop CPU or a GPU,
online or behind a firewall. We will:

1. Load and normalise the CIFAR-10 training and test datasets
2. Define a Convolutional Neural Network
3. Define a loss function and an optimizer
4. Train the network on the training data
5. Test the network on the test data

Then we train on the GPU (when there is one), and make training go faster, measuring every step.
""")

md("""
Every setting lives in the next cell. The defaults run top to bottom in a few minutes on a
2-core CPU. To run the whole notebook with other values from a terminal:
`jupyter torchlab run first_pytorch_classifier.ipynb -p EPOCHS=1 -p TRAIN_SIZE=5000`.
""")

code(
    """
EPOCHS = 2  # passes over the training data; the official tutorial trains 2
BATCH_SIZE = 4  # images per optimizer step; the official tutorial uses 4
TRAIN_SIZE = None  # training images to use; None = all (CIFAR-10: 50,000; offline stand-in: 10,000)
TEST_SIZE = None  # test images to use; None = all (CIFAR-10: 10,000; offline stand-in: 2,000)
DATA_ROOT = "data"  # where CIFAR-10 is, or is downloaded to (relative to this notebook)
DOWNLOAD = True  # try to download CIFAR-10 when it is not under DATA_ROOT yet
BENCH_IMAGES = 4_000  # images per speed measurement in "Training on the GPU" and "Go faster"
FAST_BATCH_SIZE = None  # the larger batch of "Go faster"; None = 64 on a CPU, 512 on a GPU
FAST_EPOCHS = None  # epochs of the final fast runs; None = EPOCHS on a CPU, 8 on a GPU
SEED = 0  # makes weights and shuffling repeatable
""",
    tags=["parameters"],
)

md("""
`tl.monitor()` shows what this kernel is doing while cells run: busy or idle and for how long,
its CPU and memory, and the GPUs. It stays live for the whole session.
""")

code("""
import inspect

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision
from torch import nn, optim

import jupyter_torchlab as tl

torch.manual_seed(SEED)
print(f"PyTorch {torch.__version__}, torchvision {torchvision.__version__}")
tl.monitor()
""")

md("""
## 1. Load and normalise CIFAR-10

CIFAR-10 has 60,000 colour images of 32x32 pixels in 10 classes: airplane, automobile, bird, cat,
deer, dog, frog, horse, ship and truck. torchvision's datasets give PIL images with values in
[0, 1]; like the tutorial, we turn them into tensors and normalise them to [-1, 1] with
`transforms.ToTensor()` and `transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))`.

`tl.cifar10()` does exactly that with torchvision's `CIFAR10` class. When the data cannot be
downloaded (no network, a firewall), it writes a **stand-in** in CIFAR-10's file format instead
(coloured shapes with noise, one pattern per class) and says so loudly, so that everything below
still runs. Accuracies on the stand-in say nothing about CIFAR-10.
""")

code("""
data = tl.cifar10(
    DATA_ROOT, train_size=TRAIN_SIZE, test_size=TEST_SIZE, download=DOWNLOAD, seed=SEED
)
trainset, testset, classes = data.train, data.test, data.classes
print(data)
if data.standin:
    print("\\nStand-in data: these are NOT the CIFAR-10 images (see the notice above).")
else:
    print("\\nThe real CIFAR-10.")

# the tutorial uses num_workers=2; "Go faster" measures what loader workers do
trainloader = torch.utils.data.DataLoader(trainset, batch_size=BATCH_SIZE, shuffle=True)
testloader = torch.utils.data.DataLoader(testset, batch_size=BATCH_SIZE, shuffle=False)
""")

md("Let us show some of the training images, for fun.")

code("""
def imshow(img, title=None):
    \"\"\"Show a normalised image tensor (C x H x W).\"\"\"
    img = img / 2 + 0.5  # unnormalise: [-1, 1] back to [0, 1]
    plt.figure(figsize=(8, 2.5))
    plt.imshow(np.transpose(img.numpy(), (1, 2, 0)))
    plt.axis("off")
    if title:
        plt.title(title)
    plt.show()


sample = torch.utils.data.DataLoader(trainset, batch_size=16, shuffle=True)
images, labels = next(iter(sample))
imshow(torchvision.utils.make_grid(images, nrow=8), "training images")
for row in range(2):
    print("  ".join(f"{classes[int(label)]:>10s}" for label in labels[row * 8 : row * 8 + 8]))
""")

md("""
## 2. Define a Convolutional Neural Network

The tutorial's network: two convolutions with max pooling, then three fully connected layers,
for 3-channel 32x32 images. `tl.TutorialNet` is exactly that network (same layer names, so its
weights load into the tutorial's `Net` and back). Its source:
""")

code("""
print(inspect.getsource(tl.TutorialNet))
net = tl.TutorialNet()
print(f"{sum(p.numel() for p in net.parameters()):,} parameters")
""")

md("""
## 3. Define a loss function and optimizer

Classification cross-entropy loss and stochastic gradient descent with momentum, as in the
tutorial.
""")

code("""
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
""")

md("""
## 4. Train the network

The tutorial writes the training loop by hand:

```python
for epoch in range(2):
    for inputs, labels in trainloader:
        optimizer.zero_grad()
        outputs = net(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
```

`tl.fit` runs this same loop and shows a progress bar with the loss, accuracy, images per second
and the time left. It does not slow the loop down: the loss stays a tensor until the display
refreshes, a few times a second. Like the tutorial, this first run is on the CPU.

Anything else you want to watch goes into a *callback*. This one records the mean loss every few
hundred batches, as the tutorial prints it, for a loss curve.
""")

code("""
class RunningLoss(tl.Callback):
    \"\"\"Record the mean training loss over every `every` batches.\"\"\"

    def __init__(self, every):
        self.every, self.steps, self.losses = every, [], []
        self._sum, self._count, self._step = 0.0, 0, 0

    def on_batch_end(self, state):
        self._sum = self._sum + state.loss  # a tensor: no waiting for the device here
        self._count += 1
        self._step += 1
        if self._count == self.every:
            self.steps.append(self._step)
            self.losses.append(float(self._sum) / self._count)
            self._sum, self._count = 0.0, 0


running = RunningLoss(every=max(1, len(trainloader) // 10))
history = tl.fit(
    net,
    trainloader,
    epochs=EPOCHS,
    optimizer=optimizer,
    loss_fn=criterion,
    device="cpu",
    callbacks=[running],
)
history
""")

code("""
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(running.steps, running.losses, ".-")
ax.set_xlabel("batch")
ax.set_ylabel(f"mean loss over {running.every} batches")
ax.set_title("Training loss")
plt.show()
""")

md("""
### Save and load the model

`torch.save(net.state_dict(), PATH)` is all the tutorial needs. `tl.save_checkpoint` also keeps
the optimizer, the epoch and the history, and writes atomically, so a crash mid-write never
leaves a broken file; `tl.fit(..., resume_from=PATH)` continues training from it.
""")

code("""
PATH = "cifar_net.pth"
tl.save_checkpoint(PATH, net, optimizer, epoch=len(history), history=history)

net = tl.TutorialNet()  # a fresh, untrained network...
checkpoint = tl.load_checkpoint(PATH, net)  # ...gets the trained weights back
print(f"Loaded {PATH}, saved after epoch {checkpoint.epoch}")
""")

md("""
## 5. Test the network on the test data

We have trained the network on the training data. Has it learnt anything? We check by
predicting the class of test images and comparing with the ground truth. First, a few test
images:
""")

code("""
images, labels = next(iter(torch.utils.data.DataLoader(testset, batch_size=8)))
imshow(torchvision.utils.make_grid(images), "test images")
print("GroundTruth:", " ".join(f"{classes[int(j)]:>10s}" for j in labels))

with torch.no_grad():
    outputs = net(images)
_, predicted = torch.max(outputs, 1)
print("Predicted:  ", " ".join(f"{classes[int(j)]:>10s}" for j in predicted))
""")

md("""
The outputs are energies for the 10 classes: the higher, the more the network thinks the image
is of that class, so we take the highest. Now the whole test set. `tl.evaluate` runs the network
without gradients and counts, for every true class, what was predicted: the *confusion matrix*.
Accuracy and per-class accuracy come from it.
""")

code("""
result = tl.evaluate(net, testloader, classes=classes)
print(f"Accuracy of the network on the {result.count:,} test images: {result.accuracy:.0%}")
print(f"(guessing would get {1 / len(classes):.0%})")
""")

code("""
for classname, accuracy in result.per_class.items():
    print(f"Accuracy for class: {classname:10s} is {accuracy:.1%}")
""")

code("""
def plot_confusion(result, title):
    \"\"\"Draw a confusion matrix: rows are true classes, columns predicted ones.\"\"\"
    cm = result.confusion.numpy()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(cm, cmap="Blues")
    ticks = range(len(result.classes))
    ax.set_xticks(ticks, result.classes, rotation=45, ha="right")
    ax.set_yticks(ticks, result.classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    for i in ticks:
        for j in ticks:
            color = "white" if cm[i, j] > cm.max() / 2 else "black"
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color=color, fontsize=7)
    fig.colorbar(image, ax=ax)
    plt.show()


plot_confusion(result, f"Confusion matrix, accuracy {result.accuracy:.0%}")
""")

md("""
Read it by rows: the diagonal holds the images classified correctly; the largest numbers off the
diagonal show which classes the network mixes up (on CIFAR-10 typically cat and dog, or
automobile and truck).
""")

md("""
## 6. Training on the GPU

Just as you move a tensor to the GPU, you move the network there, and then the inputs and
labels of every step; `tl.fit(..., device=device)` does both. `tl.pick_device()` picks the best
accelerator PyTorch can see (CUDA, Apple MPS, Intel XPU), else the CPU.
""")

code("""
device = tl.pick_device()
HAVE_ACCELERATOR = device.type != "cpu"
print("Best device here:", tl.describe_device(device))
print("The CPU:         ", tl.describe_device("cpu"))
if not HAVE_ACCELERATOR:
    print(
        "\\nNo GPU or other accelerator is visible to PyTorch on this machine: everything here "
        "runs on the CPU. The comparison below needs an accelerator and is skipped; on a "
        "machine with a GPU this notebook runs it unchanged."
    )
""")

md("""
To compare speeds fairly, `images_per_s` trains a fresh network twice over the same
`BENCH_IMAGES` images and keeps the faster pass (the first one also warms up caches and, on a
GPU, picks the fastest kernels; a busy machine can slow either).
""")

code("""
bench_set = torch.utils.data.Subset(trainset, range(min(BENCH_IMAGES, len(trainset))))


def images_per_s(model, dataset=bench_set, *, device, batch_size, lr=0.001, **options):
    \"\"\"Train `model` for two short epochs; return the images/s of the faster one.\"\"\"
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    h = tl.fit(
        model,
        dataset,
        epochs=2,
        optimizer=opt,
        device=device,
        batch_size=batch_size,
        progress=False,
        **options,
    )
    return max(e["images_per_s"] for e in h.epochs)


# the tutorial's setup: batch 4, images loaded in the training process (no loader workers)
tutorial_setup = {"batch_size": BATCH_SIZE, "num_workers": 0}
cpu_speed = images_per_s(tl.TutorialNet(), device="cpu", **tutorial_setup)
print(f"CPU: {cpu_speed:,.0f} images/s (TutorialNet, batch {BATCH_SIZE})")
if HAVE_ACCELERATOR:
    accel_speed = images_per_s(tl.TutorialNet(), device=device, **tutorial_setup)
    print(f"{device}: {accel_speed:,.0f} images/s = {accel_speed / cpu_speed:.1f}x the CPU")
else:
    print("No accelerator: nothing to compare with.")
""")

md("""
Why no massive speed-up? The network is tiny and a batch of 4 images gives a GPU almost nothing
to do per step; the time goes into launching work, not doing it. "Go faster" fixes that. First,
the same training as in section 4, now really on the accelerator:
""")

code("""
if HAVE_ACCELERATOR:
    gpu_net = tl.TutorialNet()
    gpu_history = tl.fit(
        gpu_net,
        trainloader,
        epochs=EPOCHS,
        optimizer=optim.SGD(gpu_net.parameters(), lr=0.001, momentum=0.9),
        device=device,
    )
    gpu_result = tl.evaluate(gpu_net, testloader, classes=classes)
    cpu_time = sum(e["time"] for e in history.epochs)
    gpu_time = sum(e["time"] for e in gpu_history.epochs)
    print(f"CPU:  {cpu_time:6.1f} s, test accuracy {result.accuracy:.1%}")
    print(f"{device.type.upper()}: {gpu_time:6.1f} s, test accuracy {gpu_result.accuracy:.1%}")
else:
    print("Skipped: there is no accelerator on this machine.")
""")

md("""
## 7. Go faster

Training speed is set by how much work each step hands the hardware and how fast data arrives.
Each step below changes one thing, measures images/s on the same images and keeps the change
only when it helps. The baseline is the tutorial's setup (batch 4, images transformed one by
one as they are loaded) on the best device here.

1. **A larger batch**: fewer, bigger steps. (Training then needs a larger learning rate.)
2. **Loader workers**: processes that prepare the next batches while the model trains.
3. **Data in memory**: transform the whole dataset once (`tl.cifar10(..., in_memory=True)`),
   so a batch is a slice of one tensor.
4. **channels_last**: the memory layout that GPU (and many CPU) convolution kernels prefer.
5. **Mixed precision**: 16-bit math on GPUs with tensor cores (`amp=True`).
6. **A better network**: ResNet-9, which uses a GPU well and learns much more per epoch.
""")

code("""
if FAST_BATCH_SIZE is None:
    FAST_BATCH_SIZE = 512 if HAVE_ACCELERATOR else 64
if FAST_EPOCHS is None:
    FAST_EPOCHS = 8 if HAVE_ACCELERATOR else EPOCHS

fast = tl.cifar10(
    DATA_ROOT,
    train_size=TRAIN_SIZE,
    test_size=TEST_SIZE,
    download=DOWNLOAD,
    seed=SEED,
    in_memory=True,
)
fast_bench = torch.utils.data.Subset(fast.train, range(len(bench_set)))

baseline = cpu_speed if not HAVE_ACCELERATOR else accel_speed
recipe = {**tutorial_setup, "dataset": bench_set}
current = baseline
table = [("tutorial setup (baseline)", baseline, True)]


def try_step(name, **change):
    \"\"\"Measure the recipe with `change`; keep the change when it is at least 5% faster.\"\"\"
    global current
    trial = {**recipe, **change}
    speed = images_per_s(tl.TutorialNet(), device=device, **trial)
    kept = speed > current * 1.05
    table.append((name, speed, kept))
    verdict = "kept" if kept else "not kept"
    print(
        f"{name:<28s} {speed:9,.0f} images/s  {speed / current:5.2f}x the previous best, "
        f"{speed / baseline:5.2f}x the baseline: {verdict}"
    )
    if kept:
        recipe.update(change)
        current = speed


try_step(f"batch {FAST_BATCH_SIZE}", batch_size=FAST_BATCH_SIZE)
try_step("2 loader workers", num_workers=2)
try_step("data in memory", dataset=fast_bench, num_workers=0)
try_step("channels_last", channels_last=True)
if HAVE_ACCELERATOR:
    try_step("mixed precision", amp=True)
else:
    print("mixed precision: skipped, it pays off on GPUs; on a CPU 16-bit math is usually slower")
""")

md("""
Now the network. ResNet-9 does many times more arithmetic per image than `TutorialNet`, so it
processes fewer images per second, but it learns far more from each one. On a GPU that work is
cheap; on a CPU we use a narrow version (`width=16`).
""")

code("""
width = 64 if HAVE_ACCELERATOR else 16
options = {k: v for k, v in recipe.items() if k not in ("dataset", "batch_size")}
resnet_speed = images_per_s(
    tl.ResNet9(width=width),
    recipe["dataset"],
    device=device,
    batch_size=FAST_BATCH_SIZE,
    **options,
)
table.append((f"ResNet9(width={width})", resnet_speed, None))
print(f"ResNet9(width={width}): {resnet_speed:,.0f} images/s")

print(f"\\n{'step':<28s} {'images/s':>10s} {'vs baseline':>12s}")
for name, speed, kept in table:
    mark = {True: "", False: "  (not kept)", None: "  (another network)"}[kept]
    print(f"{name:<28s} {speed:10,.0f} {speed / baseline:11.2f}x{mark}")
""")

md("""
### Putting it together

The same `TutorialNet`, trained with the fastest recipe on all the training images, then
ResNet-9 the same way. A bigger batch means fewer steps per epoch, so the learning rate goes up
with it, and a cosine schedule lowers it towards the end. (These learning rates are the ones
`benchmarks/bench_train.py` measured; on a GPU the big batch takes a few more epochs.)
""")

code("""
def train_fast(model, *, batch_size, lr):
    \"\"\"Train on all (in-memory) training images with the recipe; return (seconds, result).\"\"\"
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    h = tl.fit(
        model,
        fast.train,
        epochs=FAST_EPOCHS,
        optimizer=opt,
        scheduler=optim.lr_scheduler.CosineAnnealingLR(opt, T_max=FAST_EPOCHS),
        device=device,
        batch_size=batch_size,
        **options,
    )
    return sum(e["time"] for e in h.epochs), tl.evaluate(model, fast.test, classes=classes)


# the linear scaling rule: twice the batch, twice the learning rate (0.05 at batch 64), capped
batch = recipe["batch_size"]
fast_time, fast_result = train_fast(
    tl.TutorialNet(), batch_size=batch, lr=min(0.2, 0.05 * batch / 64)
)
resnet_time, resnet_result = train_fast(
    tl.ResNet9(width=width), batch_size=FAST_BATCH_SIZE, lr=0.05 if FAST_BATCH_SIZE <= 64 else 0.1
)

runs = [
    ("section 4: tutorial setup, CPU", EPOCHS, sum(e["time"] for e in history.epochs), result),
    ("TutorialNet, fast recipe", FAST_EPOCHS, fast_time, fast_result),
    (f"ResNet9(width={width}), fast recipe", FAST_EPOCHS, resnet_time, resnet_result),
]
print(f"\\n{'run':<36s} {'epochs':>6s} {'seconds':>8s} {'accuracy':>9s}")
for name, epochs, seconds, res in runs:
    print(f"{name:<36s} {epochs:6d} {seconds:8.1f} {res.accuracy:9.1%}")
""")

code("""
plot_confusion(resnet_result, f"ResNet9: confusion matrix, accuracy {resnet_result.accuracy:.0%}")
""")

md("""
## Where next

- Train longer: raise `EPOCHS` / `FAST_EPOCHS` in the first cell; `tl.fit(..., checkpoint=PATH)`
  saves after every epoch and `resume_from=PATH` continues after an interruption.
- Press the stop button while `tl.fit` runs: it finishes the current step, keeps the history so
  far and leaves the model usable.
- Several GPUs: put the training in a function and run it data-parallel, one process per GPU,
  with rank 0's progress shown here: `history = tl.launch(train, nprocs=2)` (on a CPU-only machine
  `nprocs` CPU processes). Processes forked after CUDA started cannot use the GPU, so this works
  in a fresh kernel (this notebook has already used the GPU above). Several machines: the same
  `tl.fit` in a script run by `torchrun` (README, "Scaling out").
- The official tutorials continue at <https://pytorch.org/tutorials/>.
""")


def build() -> nbformat.NotebookNode:
    """Return the notebook: no outputs, no execution counts, ids stable across runs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, cell in enumerate(CELLS):
        kind, source = cell[0], cell[1]
        if kind == "md":
            new = nbformat.v4.new_markdown_cell(source)
        else:
            tags = cell[2] if len(cell) > 2 else []
            new = nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {})
        new.id = f"cell-{i:02d}"  # fixed ids keep diffs small when the text changes
        nb.cells.append(new)
    nbformat.validate(nb)
    return nb


def main() -> int:
    """Write the notebook, or with --check fail when the committed one is out of date."""
    text = nbformat.writes(build()) + "\n"
    if "--check" in sys.argv[1:]:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run python scripts/make_notebook.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({len(CELLS)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long the fusion SVM takes (evaluation.svm_fit: C chosen by cross-validation, then the final fit) at
UCF-101's size: split 1's 9,537 training videos, 101 classes, two streams (202 features), 18 groups.

    python benchmarks/bench_svm.py                         # both cases
    python benchmarks/bench_svm.py --case uniform --save-predictions /tmp/uniform.npy

Two cases of generated softmax scores:
    separated  real-like nets: logits N(0, 1) plus a margin on the true class (top-1 about 67% and 82%)
    uniform    near-uniform scores, as untrained or stand-in nets give (benchmarks/rehearsal.py score-all):
               softmax of N(0, 0.1) logits, nothing to learn; liblinear converges slowly on these
--save-predictions writes the SVM's predictions on 3,783 test videos, to compare two versions of the code.

Measured on the 2-core development machine (load 6-7 from other work), before -> after C was cross-validated
on SVM_CV_VIDEOS: separated 256 s -> 59 s, the same C (0.001) and the same 3,783 predictions; uniform: one fit
of the grid at C = 1 on all 9,537 videos took 394 s (20 fits) -> svm_fit 304 s in all (cross-validation
72 s, the final fit on all videos the rest).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from twostream.scoring import evaluation  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--case", choices=("separated", "uniform"), nargs="+", default=("separated", "uniform"))
parser.add_argument("--videos", type=int, default=9537, help="training videos (UCF-101 split 1: 9,537)")
parser.add_argument("--save-predictions", metavar="PATH", help="a .npy of the test videos' predicted classes")
args = parser.parse_args()

CLASSES, GROUPS, TEST_VIDEOS = 101, range(8, 26), 3783  # split 1 trains on groups 8-25


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def stream_scores(rng, labels, case, margin):
    if case == "uniform":
        return softmax(rng.normal(0, 0.1, (len(labels), CLASSES)))
    return softmax(rng.normal(0, 1, (len(labels), CLASSES)) + margin * np.eye(CLASSES)[labels])


for case in args.case:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, args.videos)
    groups = rng.choice(list(GROUPS), args.videos)
    test_labels = rng.integers(0, CLASSES, TEST_VIDEOS)
    train, test = ({"spatial": stream_scores(rng, y, case, 3.0), "temporal": stream_scores(rng, y, case, 3.5)}
                   for y in (labels, test_labels))
    start = time.perf_counter()
    svm = evaluation.svm_fit(train, labels, groups=list(groups))
    seconds = time.perf_counter() - start
    predictions = evaluation.svm_scores(svm, test).argmax(axis=1)
    print(f"{case}: svm_fit {seconds:.1f} s on {os.cpu_count()} cores; C = {svm.choice_['C']:g} ({svm.choice_['how']}; "
          f"validation accuracy {svm.choice_['accuracy']}); final fit {svm[-1].n_iter_} liblinear iterations; "
          f"test top-1 {100 * np.mean(predictions == test_labels):.1f}%", flush=True)
    if args.save_predictions:
        np.save(args.save_predictions.replace(".npy", f"_{case}.npy"), predictions)

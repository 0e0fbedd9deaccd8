#!/usr/bin/env bash
# The whole two-stream pipeline on the generated mini dataset, from a fresh clone:
# set up, generate the videos, extract frames and flow, train both streams, test and fuse.
# A rerun resumes: finished steps are skipped, nothing already made is overwritten.
source "$(dirname "$0")/.ci/setup"  # .venv, $python, the clock
data=data/synthetic
size=128x96  # small frames so that the whole run fits in minutes on 2 CPU cores

$python prepare_data.py synthetic --out $data
$python prepare_data.py frames --videos $data/UCF-101 --out $data/jpegs_256 --size $size --workers 2
# DIS instead of TV-L1: TV-L1 runs about 1 frame pair/s per core, too slow for a 10-minute demo.
$python prepare_data.py flow --videos $data/UCF-101 --out $data/tvl1_flow --size $size --flow-method dis --workers 2
$python prepare_data.py check --data-dir $data --splits-dir $data/splits --split 1
$python spatial_train.py --dataset synthetic
$python temporal_train.py --dataset synthetic
$python fuse_test.py --dataset synthetic
took "run_mini.sh: the pipeline" results/synthetic_split1/

#!/usr/bin/env bash
# Multi-task training on the two generated mini datasets, side by side with the same temporal
# network trained on each dataset alone (the paper's Tables 2-3 in miniature). From a fresh clone:
# set up, generate both datasets, extract their flow, train three temporal nets, test each head.
# A rerun resumes: finished steps are skipped, nothing already made is overwritten.
source "$(dirname "$0")/.ci/setup"  # .venv, $python, the clock
size=128x96  # as run_mini.sh

$python prepare_data.py synthetic --out data/synthetic
$python prepare_data.py synthetic --layout hmdb51 --out data/synthetic_hmdb
for dataset in synthetic synthetic_hmdb; do
  videos=data/$dataset/UCF-101
  [ "$dataset" = synthetic ] || videos=data/$dataset/hmdb51_org
  $python prepare_data.py flow --videos $videos --out data/$dataset/tvl1_flow --size $size --flow-method dis --workers 2
done

# Each dataset alone, then one net with a head for each: the HMDB-style set is the target, and
# only the UCF-style set's training list joins it (--multitask-videos train), so both heads can be tested.
$python temporal_train.py --dataset synthetic --checkpoint-dir checkpoints/synthetic/temporal
$python temporal_train.py --dataset synthetic_hmdb --checkpoint-dir checkpoints/synthetic_hmdb/temporal
$python temporal_train.py --dataset synthetic_hmdb --multitask synthetic --multitask-videos train \
  --checkpoint-dir checkpoints/synthetic_hmdb/temporal_multitask

test_head() {  # dataset, model, run name
  $python fuse_test.py --dataset "$1" --streams temporal --temporal "$2" --run-name "$3"
}
test_head synthetic_hmdb checkpoints/synthetic_hmdb/temporal/last.keras multitask_mini/hmdb_alone
test_head synthetic_hmdb checkpoints/synthetic_hmdb/temporal_multitask/last.keras multitask_mini/hmdb_multitask
test_head synthetic checkpoints/synthetic/temporal/last.keras multitask_mini/ucf_alone
test_head synthetic checkpoints/synthetic_hmdb/temporal_multitask/last.keras multitask_mini/ucf_multitask
$python -c "from twostream.scoring import report; print(report.side_by_side('results/multitask_mini', {
    'HMDB-style head': ('hmdb_alone', 'hmdb_multitask'), 'UCF-style head': ('ucf_alone', 'ucf_multitask')}))" \
  | tee results/multitask_mini/results.md
took run_multitask_mini.sh: results/multitask_mini/

#!/bin/bash
# Round 4 (issue 11.4): the chosen optimiser settings (temporal validation rows, seeds 0-2;
# docs/results/segrec/README.md) for Video and the interest features, both backbones.
# usage: run_round4.sh SPLIT SEED...   (temporal | random_per_user)
cd "$(dirname "$0")"
EV="--patience 4 --set optim.eval_every=14 optim.zero_init_dense=true optim.ema=0.98 optim.emb_weight_decay=1e-4"
SPLIT=$1
shift
for s in "$@"; do
  BACKBONES="din widedeep" ./run4.sh $SPLIT video-ev-ema98-wd "--mode video $EV" $s
  BACKBONES=din ./run4.sh $SPLIT features-lin-ev-ema98-wd "--mode features --dense-linear $EV" $s
  BACKBONES=widedeep ./run4.sh $SPLIT features-ev-ema98-wd "--mode features $EV" $s
done

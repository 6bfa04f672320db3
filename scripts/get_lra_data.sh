#!/usr/bin/env bash
# Fetch the Long Range Arena data into one folder and print the flags that point the tasks at it.
#
#   scripts/get_lra_data.sh [DEST]        (default DEST: ./lra_data; needs network access)
#
# * the LRA release (ListOps, Retrieval/AAN, Pathfinder/Path-X; about 7 GB unpacked):
#   https://storage.googleapis.com/long-range-arena/lra_release.gz -> DEST/lra_release/
# * the TFDS datasets of Text and Image, prepared in array_record format (read without
#   TensorFlow; preparing cifar10 needs TensorFlow: pip install tensorflow-cpu)
#   -> DEST/tensorflow_datasets/
# Each step is skipped when its output exists, so the script can be re-run after a failure.
set -euo pipefail
DEST=$(realpath -m "${1:-lra_data}")
mkdir -p "$DEST"

if [ ! -d "$DEST/lra_release" ]; then
  curl -fL --retry 3 -o "$DEST/lra_release.gz" https://storage.googleapis.com/long-range-arena/lra_release.gz
  tar xzf "$DEST/lra_release.gz" -C "$DEST"
  rm "$DEST/lra_release.gz"
fi
# The archive unpacks to lra_release/ (older copies: lra_release/lra_release/).
RELEASE="$DEST/lra_release"
[ -d "$RELEASE/lra_release" ] && RELEASE="$RELEASE/lra_release"

for name in imdb_reviews cifar10; do
  if ! ls -d "$DEST/tensorflow_datasets/$name" >/dev/null 2>&1; then
    tfds build "$name" --data_dir "$DEST/tensorflow_datasets" --file_format array_record
  fi
done

cat <<MSG
Data in $DEST. Flags per task:
  ListOps:    --config.data_dir=$RELEASE/listops-1000
  Retrieval:  --config.data_dir=$RELEASE/tsv_data
  Pathfinder: --config.data_dir=$RELEASE          (configs/pathfinder.py and configs/pathx.py)
  Text/Image: --config.data.tfds_data_dir=$DEST/tensorflow_datasets
MSG

#!/usr/bin/env bash
# The GPU check of LeNet-BN, for a lent machine that has PyTorch (CUDA) under python3 and no .NET.
#
#   scripts/device-check.sh bundle   here (with the .NET SDK): publish Examples/Benchmark self-contained for
#                                    linux-x64 without libtorch (-p:TorchBackend=external), and put it, compressed,
#                                    with the Fashion-MNIST files into .device-bundle/ (gitignored, < 64 MiB).
#   scripts/device-check.sh run      there: unpack, take libtorch from PyTorch (MLNETBN_TORCH_LIB = torch/lib),
#                                    run the benchmark on CUDA (BN folding included: folded vs unfolded prediction
#                                    for each BN kind), then train on CUDA -> save -> load on the CPU in a
#                                    process with CUDA hidden (and once more with it visible) and compare; results
#                                    and logs go to $OUT (default ./device-out).
#
# The device tool's call, from the repository root (the bundle travels as an ignored path named in carry):
#   command: bash scripts/device-check.sh run      carry: [".device-bundle"]      timeout_s: 540
#
# Settings for `run` (environment): DEVICE (cuda; cpu for a dry run), EPOCHS (5), BENCH_ARGS (more benchmark
# options), CHECK_ARGS (more export-model options), TORCH_LIB (default: PyTorch's torch/lib from python3), WORK
# (unpack folder, default a temporary one), BENCH_TIMEOUT (seconds for the benchmark, 360), CHECK_TIMEOUT (seconds
# for each model-check step, 120).
#
# A dry run here, on the CPU, with the libtorch of the libtorch-cpu NuGet package standing in for PyTorch's:
#   DEVICE=cpu EPOCHS=2 TORCH_LIB=~/.nuget/packages/libtorch-cpu-linux-x64/2.10.0/runtimes/linux-x64/native \
#   BENCH_ARGS="--train-count 1000 --test-count 500 --predictions 200 --fold-repeats 1 --fold-min-seconds 0" \
#   CHECK_ARGS="--train-count 1000 --rows 64" \
#   OUT=/tmp/device-out scripts/device-check.sh run
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bundle="$repo/.device-bundle"
archive=benchmark-linux-x64.tar.xz
limit_bytes=$((64 * 1024 * 1024))

die() { echo "device-check: $*" >&2; exit 1; }

bundle_here() {
    command -v dotnet >/dev/null || die "the bundle is built with the .NET SDK (dotnet), which is not on PATH."
    command -v xz >/dev/null || die "xz is needed to compress the bundle (apt-get install xz-utils)."
    local data="${DATA_DIR:-${MLNETBN_DATA_DIR:+$MLNETBN_DATA_DIR/fashion-mnist}}"
    data="${data:-$HOME/.local/share/MlNetBn/fashion-mnist}"
    local f
    for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
        [[ -f "$data/$f" ]] || die "Fashion-MNIST's $f is not in '$data': run the FashionMnist example (or the benchmark) once to download it, or set DATA_DIR."
    done

    # Publish from a copy of the sources (tracked and untracked, not ignored): -p:TorchBackend=external restores
    # Trainers without libtorch, which must not overwrite the assets and obj/ of this checkout's normal builds.
    local scratch
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/mlnetbn-bundle.XXXXXX") || die "no temporary folder"
    trap 'rm -rf "$scratch"' RETURN
    mkdir -p "$scratch/src"
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -cf -) | tar -xf - -C "$scratch/src" \
        || die "could not copy the sources"
    echo "device-check: publishing Examples/Benchmark (Release, linux-x64, self-contained, TorchBackend=external)..."
    dotnet publish "$scratch/src/Examples/Benchmark/Benchmark.csproj" -c Release -r linux-x64 --self-contained \
        -p:TorchBackend=external -p:DebugType=none -p:GenerateDocumentationFile=false -o "$scratch/benchmark" -nologo -v:minimal \
        || die "dotnet publish failed"

    # What must and must not be in it: no libtorch (PyTorch's comes at run time), the patched LibTorchSharp.
    if ls "$scratch/benchmark" | grep -Eq '^libtorch_cpu\.so$|^libc10\.so$'; then
        die "the publish output contains libtorch; with MLNETBN_TORCH_LIB two copies would abort the process (TorchBackend=external did not apply)."
    fi
    [[ -f "$scratch/benchmark/libLibTorchSharp.so" ]] || die "libLibTorchSharp.so is missing from the publish output."
    # The version needs (objdump -p), not the string table: the patch leaves the unused "GLIBCXX_3.4.32" string there.
    if command -v objdump >/dev/null && objdump -p "$scratch/benchmark/libLibTorchSharp.so" | grep -q 'GLIBCXX_3\.4\.32'; then
        die "libLibTorchSharp.so still needs GLIBCXX_3.4.32: the build's patch (build/LibTorchSharpGlibcxxPatch.targets) did not apply."
    fi

    rm -rf "$bundle"
    mkdir -p "$bundle/fashion-mnist"
    echo "device-check: compressing..."
    tar -C "$scratch" -cf - benchmark | xz -9 -T0 > "$bundle/$archive" || die "compression failed"
    cp "$data"/*-ubyte.gz "$bundle/fashion-mnist/"
    [[ -f "$data/manifest.json" ]] && cp "$data/manifest.json" "$bundle/fashion-mnist/"
    cat > "$bundle/README.txt" <<EOF
LeNet-BN device check bundle, built $(date -u '+%Y-%m-%d %H:%M UTC') from $(cd "$repo" && git rev-parse --short HEAD)$(cd "$repo" && git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)').
$archive: Examples/Benchmark published self-contained for linux-x64, without libtorch.
fashion-mnist/: the IDX files the benchmark reads (no network there).
Run it from the repository root on the GPU machine:
  bash scripts/device-check.sh run        (device tool: carry [".device-bundle"], timeout_s 540)
EOF
    local total
    total=$(du -sb "$bundle" | cut -f1)
    (cd "$bundle" && ls -l "$archive" fashion-mnist)
    echo "device-check: .device-bundle/ is $((total / 1024 / 1024)) MiB ($total bytes); the limit is 64 MiB."
    (( total < limit_bytes )) || die "the bundle is over 64 MiB; it would not travel."
}

run_there() {
    local out="${OUT:-$PWD/device-out}"
    mkdir -p "$out" || die "cannot create '$out'"
    out=$(cd "$out" && pwd)
    exec > >(tee -a "$out/device-check.log") 2>&1
    [[ -f "$bundle/$archive" ]] || die "'$bundle/$archive' is missing: run 'scripts/device-check.sh bundle' here and carry .device-bundle."

    local device="${DEVICE:-cuda}" epochs="${EPOCHS:-5}"
    local work="${WORK:-}"
    [[ -n "$work" ]] || work=$(mktemp -d "${TMPDIR:-/tmp}/mlnetbn-device.XXXXXX")
    mkdir -p "$work" || die "cannot create '$work'"
    if command -v xz >/dev/null; then
        tar -C "$work" -xJf "$bundle/$archive" || die "could not unpack $archive into $work"
    else
        # No xz on the machine: Python's tarfile reads .tar.xz (lzma) and keeps the files' modes.
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle/$archive" "$work" \
            || die "could not unpack $archive into $work (no xz, and python3's tarfile failed)"
    fi
    local app="$work/benchmark/MlNetBn.Benchmark"
    [[ -x "$app" ]] || die "'$app' is missing from the bundle."
    local data="$bundle/fashion-mnist"

    local torch_lib="${TORCH_LIB:-}"
    if [[ -z "$torch_lib" ]]; then
        torch_lib=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")') \
            || die "python3 cannot import torch; set TORCH_LIB to a libtorch folder."
    fi
    export MLNETBN_TORCH_LIB="$torch_lib"
    # No ICU needed: the benchmark formats with the invariant culture, and a bare machine may not have libicu.
    export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
    export DOTNET_CLI_TELEMETRY_OPTOUT=1

    {
        echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        echo "host: $(uname -a)"
        echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
        echo "MLNETBN_TORCH_LIB: $MLNETBN_TORCH_LIB"
        python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1
        command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
        ldd "$work/benchmark/libLibTorchSharp.so" 2>&1 | grep -i 'not found' | grep -Ev 'lib(torch|torch_cpu|c10)\.so' || true  # libtorch comes preloaded
    } | tee "$out/environment.txt"

    local status=0 sampler=""
    if [[ "$device" == cuda ]] && command -v nvidia-smi >/dev/null; then
        # Device-wide memory every 200 ms, as a cross-check of the benchmark's own NVML samples.
        nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -lms 200 > "$out/nvidia-smi.csv" 2>&1 &
        sampler=$!
    fi

    echo "== benchmark on $device =="
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
    timeout "${BENCH_TIMEOUT:-360}" "$app" --device "$device" --epochs "$epochs" --data-dir "$data" --out "$out" ${BENCH_ARGS:-}
    local bench=$?
    echo "benchmark exit code: $bench"
    (( bench == 0 )) || status=1

    echo "== model check: train on $device, save =="
    # shellcheck disable=SC2086  # CHECK_ARGS is a list of options
    timeout "${CHECK_TIMEOUT:-120}" "$app" export-model --device "$device" --data-dir "$data" --dir "$out/model-check" ${CHECK_ARGS:-}
    local export_code=$?
    echo "export-model exit code: $export_code"
    local hidden=-1 visible=-1
    if (( export_code == 0 )); then
        echo "== model check: load on the CPU with CUDA hidden =="
        CUDA_VISIBLE_DEVICES= timeout "${CHECK_TIMEOUT:-120}" "$app" verify-model --data-dir "$data" --dir "$out/model-check"
        hidden=$?
        echo "== model check: load on the CPU with CUDA visible (a loaded model stays on the CPU) =="
        timeout "${CHECK_TIMEOUT:-120}" "$app" verify-model --data-dir "$data" --dir "$out/model-check"
        visible=$?
    fi
    (( export_code == 0 && hidden == 0 && visible == 0 )) || status=1
    rm -f "$out"/model-check/*.zip 2>/dev/null  # the predictions and reports stay; the zips are not needed back

    [[ -n "$sampler" ]] && kill "$sampler" 2>/dev/null
    {
        echo "benchmark=$bench"
        echo "export-model=$export_code"
        echo "verify-model-cuda-hidden=$hidden"
        echo "verify-model-cuda-visible=$visible"
        echo "status=$status"
    } | tee "$out/summary.txt"
    [[ -z "${WORK:-}" ]] && rm -rf "$work"
    return "$status"
}

case "${1:-}" in
    bundle) bundle_here ;;
    run) run_there ;;
    *) echo "usage: $0 bundle|run   (see the comment at the top of this file)" >&2; exit 2 ;;
esac

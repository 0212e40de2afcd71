"""Write the /proc/cpuinfo an arm64 Linux kernel would show for the CPU this process runs on.

Used by deploy/arm64-check.sh inside the emulated root: qemu-user passes the host's x86
/proc/cpuinfo through, which no Pi ever shows (and which crashes XNNPACK's CPU probe). The
Features line is decoded from the CPU's own AT_HWCAP/AT_HWCAP2 (what QEMU_CPU advertises, read
from /proc/self/auxv, which qemu-user emulates), with the kernel's names; the part number and
model line come from the CPU name given (the hardware it stands for).

    python3 cpuinfo.py cortex-a72 > cpuinfo     # stdlib only: runs with the root's python3
"""

import struct
import sys
from pathlib import Path

HWCAP = (
    "fp",
    "asimd",
    "evtstrm",
    "aes",
    "pmull",
    "sha1",
    "sha2",
    "crc32",
    "atomics",
    "fphp",
    "asimdhp",
    "cpuid",
    "asimdrdm",
    "jscvt",
    "fcma",
    "lrcpc",
    "dcpop",
    "sha3",
    "sm3",
    "sm4",
    "asimddp",
    "sha512",
    "sve",
    "asimdfhm",
    "dit",
    "uscat",
    "ilrcpc",
    "flagm",
    "ssbs",
    "sb",
    "paca",
    "pacg",
)
HWCAP2 = (
    "dcpodp",
    "sve2",
    "sveaes",
    "svepmull",
    "svebitperm",
    "svesha3",
    "svesm4",
    "flagm2",
    "frint",
    "svei8mm",
    "svef32mm",
    "svef64mm",
    "svebf16",
    "i8mm",
    "bf16",
    "dgh",
    "rng",
    "bti",
    "mte",
    "ecv",
    "afp",
    "rpres",
    "mte3",
    "sme",
    "smei16i64",
    "smef64f64",
    "smei8i32",
    "smef16f32",
    "smeb16f32",
    "smef32f32",
    "smefa64",
    "wfxt",
    "ebf16",
    "sveebf16",
)
AT_HWCAP, AT_HWCAP2 = 16, 26
# name -> (variant, part, revision, model line): the boards these CPUs are in
BOARDS = {
    "cortex-a72": ("0x0", "0xd08", 3, "Raspberry Pi 4 Model B Rev 1.4"),
    "cortex-a76": ("0x4", "0xd0b", 1, "Raspberry Pi 5 Model B Rev 1.0"),
}


def hwcaps() -> tuple[int, int]:
    with Path("/proc/self/auxv").open("rb") as f:
        data = f.read()
    pairs = dict(struct.iter_unpack("<QQ", data[: len(data) // 16 * 16]))
    return pairs.get(AT_HWCAP, 0), pairs.get(AT_HWCAP2, 0)


def features(h1: int, h2: int) -> list[str]:
    return [n for i, n in enumerate(HWCAP) if h1 >> i & 1] + [
        n for i, n in enumerate(HWCAP2) if h2 >> i & 1
    ]


def main() -> None:
    cpu = sys.argv[1] if len(sys.argv) > 1 else "max"
    variant, part, rev, model = BOARDS.get(cpu, ("0x0", "0x000", 0, f"QEMU {cpu} CPU"))
    feats = " ".join(features(*hwcaps()))
    for n in range(4):
        print(
            f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {feats}\n"
            f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: {variant}\n"
            f"CPU part\t: {part}\nCPU revision\t: {rev}\n"
        )
    print(f"Model\t\t: {model}")


if __name__ == "__main__":
    main()

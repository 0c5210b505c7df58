"""The benchmark phantom's figures: seconds per subject and the measured properties (docs/benchmark.md).

    python bench/phantom.py                     # 4 subjects with tumours at the default shape (seeds 3-6)
    python bench/phantom.py --subjects 8 --anatomy procedural

Prints the time to make each subject (the goal is <= 5 s at the default shape on this project's 2-core machine)
and the property table of :func:`napari_medtrans.phantom.properties.measure`: the per-voxel lookup fitted on one
subject and applied to the next, the white-matter texture correlation between T1 and T2, how well T2 alone
tells the enhancing rim from oedema, and the white-matter SNR of every contrast.
"""

from __future__ import annotations

import argparse
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subjects", type=int, default=4)
    p.add_argument("--first-seed", type=int, default=3)
    p.add_argument("--anatomy", default="mni152", choices=("mni152", "procedural"))
    p.add_argument("--healthy", action="store_true", help="no tumours (the rim/oedema figure is then skipped)")
    args = p.parse_args(argv)

    from napari_medtrans.phantom import make_subject, mni_templates
    from napari_medtrans.phantom import properties as props

    if args.anatomy == "mni152":
        t0 = time.perf_counter()
        mni_templates()
        print(f"MNI152 templates loaded once per process in {time.perf_counter() - t0:.1f} s")
    subjects, times = [], []
    for k in range(args.subjects):
        t0 = time.perf_counter()
        subjects.append(make_subject(args.first_seed + k, anatomy=args.anatomy, tumour=not args.healthy))
        times.append(time.perf_counter() - t0)
    shape = subjects[0].labels.shape
    print(f"{args.subjects} {args.anatomy} subjects at {shape}: {min(times):.2f} / {sum(times) / len(times):.2f} / "
          f"{max(times):.2f} s (min / mean / max per subject)")
    table = props.measure(subjects)
    goals = {"lookup_ssim": "<= 0.75", "texture_r_T1_T2": "|r| <= 0.5", "rim_edema_auc_T2": "<= 0.80",
             "wm_snr_FLAIR": "< T1's", "wm_snr_T1c": "< T1's"}
    for name, value in table.items():
        print(f"  {name:<26}{value:>9.3f}   {goals.get(name, '')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Print the N slowest tests of pytest's JUnit XML reports: python .ci/slowest.py N report.xml..."""
import sys
import xml.etree.ElementTree as ElementTree


def timings(path):
    stage = path.rsplit("/", 1)[-1].removesuffix(".xml")
    for case in ElementTree.parse(path).iter("testcase"):
        yield float(case.get("time", 0)), stage, f"{case.get('classname')}::{case.get('name')}"


def main(count, paths):
    rows = sorted((row for path in paths for row in timings(path)), reverse=True)
    print(f"== the {count} slowest tests of all stages (seconds, stage, test)")
    for seconds, stage, name in rows[:count]:
        print(f"{seconds:8.1f}  {stage:<10} {name}")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])

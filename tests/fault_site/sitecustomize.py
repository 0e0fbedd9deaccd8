"""Run by Python at the start of every process whose PYTHONPATH holds this folder
(faults.fault_environment), worker processes included: there FAULT strikes at the moments of image
writes and of folder and file renames (faults.install_file_faults)."""
import os
import sys

if os.environ.get("FAULT"):
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import faults

    faults.install_file_faults()

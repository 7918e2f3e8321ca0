"""edgeproof agent: the device side (TPM access, enrollment, renewal) and simulators."""

import os

# libtss2 logs TPM error codes to stderr at WARNING by default, including the
# expected ones (probing an absent NV index). The agent reports errors itself.
os.environ.setdefault("TSS2_LOG", "all+NONE")

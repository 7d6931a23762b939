"""`python -m orchard.federated --role host|guest ...`: a party process (orchard.federated.party.main).

The coordinator starts parties this way: multiprocessing never re-imports a package's `__main__` in a spawned
process, so a party's Paillier `Helper` starts without importing the party's modules (pandas, the channel, the
host's handlers) again: 0.3 s instead of about 2 s.
"""

import sys

from orchard.federated.party import main

if __name__ == "__main__":
    sys.exit(main())

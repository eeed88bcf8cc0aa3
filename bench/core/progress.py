"""Progress bars on stderr; silent when stderr is not a terminal (CI logs stay readable)."""
from tqdm import tqdm


def progress(iterable, total=None, desc=None):
    return tqdm(iterable, total=total, desc=desc, disable=None, leave=False, dynamic_ncols=True)

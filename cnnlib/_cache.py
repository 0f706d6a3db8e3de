"""Where Numba caches cnnlib's compiled kernels when the installed package is read-only.

Numba writes its cache next to the source (``cnnlib/__pycache__``) when it can. A JupyterHub
image is different: the admin runs ``python -m cnnlib.warmup`` as root when building it, which
fills ``cnnlib/__pycache__``, and students then run as users who cannot write there. Numba's own
fallback is a per-user directory (``~/.cache/numba``) that starts empty, so every student
recompiled every kernel (54 s for the warm-up, 9.6 s for a first conv + relu); with no writable
home, Numba found no cache directory at all and ``import cnnlib`` failed ("no locator
available").

``install()`` puts one locator in front of Numba's own. For cnnlib's source files whose
``__pycache__`` is not writable it returns a writable *overlay* directory, the first that works of

1. ``$NUMBA_CACHE_DIR`` (the user's own choice), then
2. Numba's per-user cache directory (``~/.cache/numba``), then
3. ``<tmp>/cnnlib-numba-<uid>``,

and fills it with symbolic links to the image's cached files. Numba then loads the image's
kernels through the links (no recompilation) and writes anything new into the overlay (it
replaces a link, never the file behind it). Where the package is writable nothing changes.
When no directory is writable at all, ``install()`` returns False and cnnlib compiles without a
disk cache (``cnnlib._jit`` then says so once).
"""

from __future__ import annotations

import os
import tempfile

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_SUFFIXES = (".nbi", ".nbc")


def _writable_dir(path: str) -> bool:
    """True when ``path`` exists or can be made, and a file can be written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _in_tree_writable(folder: str) -> bool:
    cache = os.path.join(folder, "__pycache__")
    return os.access(cache if os.path.isdir(cache) else folder, os.W_OK)


def _overlay_roots() -> list[str]:
    """Candidate directories for the overlay, in order of preference."""
    roots = []
    if os.environ.get("NUMBA_CACHE_DIR"):
        roots.append(os.environ["NUMBA_CACHE_DIR"])
    try:
        from numba.misc.appdirs import AppDirs

        roots.append(AppDirs(appname="numba", appauthor=False).user_cache_dir)
    except Exception:  # no home directory at all (pwd lookup fails) or an older Numba
        pass
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    roots.append(os.path.join(tempfile.gettempdir(), f"cnnlib-numba-{uid}"))
    return roots


def _link_image_cache(image_cache: str, overlay: str) -> None:
    """Link every cached file of ``image_cache`` that ``overlay`` lacks."""
    try:
        names = os.listdir(image_cache)
    except OSError:
        return
    for name in names:
        if name.endswith(_SUFFIXES):
            target = os.path.join(overlay, name)
            if not os.path.lexists(target):
                try:
                    os.symlink(os.path.join(image_cache, name), target)
                except OSError:  # another process linked it first, or no symlinks here
                    pass


def install() -> bool:
    """Register the overlay locator with Numba; False when no writable directory exists."""
    if _in_tree_writable(_PACKAGE):
        return True  # the usual case: Numba's in-tree cache works
    root = next((r for r in _overlay_roots() if _writable_dir(r)), None)
    if root is None:
        return False
    try:
        from numba.core import caching

        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # renamed in 0.62
        _CacheLocator = caching._CacheLocator
        _SourceFileBackedLocatorMixin = caching._SourceFileBackedLocatorMixin
    except (ImportError, AttributeError):  # internals moved: Numba's per-user cache, if any
        return any(_writable_dir(r) for r in _overlay_roots()[:-1])

    linked: set[str] = set()

    class ImageCacheLocator(_SourceFileBackedLocatorMixin, _CacheLocator):
        """cnnlib's kernels in a read-only install: the image's cache, seen through links."""

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = os.path.join(root, self.get_suitable_cache_subpath(py_file))

        def get_cache_path(self):
            return self._cache_path

        @classmethod
        def from_function(cls, py_func, py_file):
            folder = os.path.dirname(os.path.abspath(py_file))
            inside = folder == _PACKAGE or folder.startswith(_PACKAGE + os.sep)
            if not inside or _in_tree_writable(folder):
                return None  # not cnnlib's, or Numba's own in-tree cache can serve it
            self = cls(py_func, py_file)
            try:
                self.ensure_cache_path()
            except OSError:
                return None
            if folder not in linked:
                _link_image_cache(os.path.join(folder, "__pycache__"), self._cache_path)
                linked.add(folder)
            return self

    if not any(getattr(c, "__name__", "") == "ImageCacheLocator"
               for c in impl._locator_classes):
        impl._locator_classes.insert(0, ImageCacheLocator)
    return True

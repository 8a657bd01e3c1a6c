"""URLs from outside, split without raising.

`urllib.parse.urlsplit` raises `ValueError` for some strings a browser or a
proxy may send (`http://[::1/x`: an unclosed IPv6 bracket; `[:::::]`: a
bracketed host that is no address; a netloc that NFKC normalization changes
into one with `/`, `?`, `#`, `@` or `:`), and `SplitResult.port` does for a
port that is not a number from 0 to 65535. Every URL the middleware reads
(`next`, RelayState, Origin, forwarded headers, metadata URLs and redirects)
goes through `split_url`, so such a value is simply not a usable URL: the
caller refuses or ignores it, as it does any other foreign URL.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit


def split_url(url: str) -> SplitResult | None:
    """`urlsplit(url)` whose `.port` can be read, or None when either would raise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not 0-65535
    except ValueError:
        return None
    return parts

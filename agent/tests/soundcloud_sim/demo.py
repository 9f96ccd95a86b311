"""A small demo catalog for the sandbox and for tests that want "some realistic accounts"."""

from __future__ import annotations

from .catalog import Catalog, Track, User

MIB = 1 << 20


def demo_catalog() -> Catalog:
    """Two users (`band-one`, `band-two`) with three listed tracks each, 2-20 MiB.

    Track 1002 has a hostile title, 1003 is not downloadable (archive it via HLS), and band-two
    also owns 2004, which is blocked and so hidden from default listings.
    """
    return Catalog(
        users=[
            User(
                id=948745750,
                permalink="band-one",
                username="Band One",
                tracks=[
                    Track(
                        id=1001,
                        title="First Demo",
                        size=4 * MIB + 123,
                        content_type="audio/mpeg",
                        created_at="2021/03/04 10:00:00 +0000",
                        genre="Rock",
                    ),
                    Track(
                        id=1002,
                        title="Rehearsal ../../etc/passwd / Ünïcødé 🎸 \\ CON?*",
                        size=6 * MIB + 7,
                        content_type="audio/wav",
                        created_at="2022/07/19 21:13:08 +0000",
                    ),
                    Track(
                        id=1003,
                        title="Live at the Basement (stream only)",
                        size=9 * MIB,
                        downloadable=False,
                        created_at="2023/11/02 08:30:00 +0000",
                    ),
                ],
            ),
            User(
                id=948745751,
                permalink="band-two",
                username="Band Two",
                tracks=[
                    Track(
                        id=2001,
                        title="Long Take",
                        size=20 * MIB + 1,
                        content_type="audio/x-flac",
                        created_at="2020/01/15 15:40:49 +0000",
                    ),
                    Track(
                        id=2002,
                        title="Short One",
                        size=2 * MIB - 1,
                        created_at="2024/05/05 05:05:05 +0000",
                    ),
                    Track(
                        id=2003,
                        title="Third Take",
                        size=8 * MIB + 333,
                        content_type="audio/aiff",
                        created_at="2023/02/28 23:59:59 +0000",
                    ),
                    Track(
                        id=2004,
                        title="Blocked In Your Country",
                        size=3 * MIB,
                        access="blocked",
                        created_at="2024/06/06 06:06:06 +0000",
                    ),
                ],
            ),
        ]
    )

"""The fixture catalogue every emulator serves: the same posts, users and hashtags in every shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

MEDIA_DIR = Path(__file__).parent / "media"


def post_id_at(unix_seconds: int, serial: int) -> str:
    """A realistic post id: TikTok ids carry their creation time in the top 32 bits."""
    return str((unix_seconds << 32) | (serial & 0xFFFFFFFF))


class Status(StrEnum):
    """How the TikTok web page answers for a post."""

    OK = "ok"
    PRIVATE = "private"  # statusCode 10216
    PRIVATE_ACCOUNT = "private_account"  # 10222
    DELETED = "deleted"  # a statusMsg ("item doesn't exist") and no item
    REGION = "region"  # 10231
    AGE = "age"  # isContentClassified


@dataclass(frozen=True, slots=True)
class Rendition:
    """One video rendition in `bitrateInfo`; `size` bytes, synthesised when no `file` is given."""

    gear: str
    codec: str  # h264, h265 (bytevc1), bytevc2
    width: int
    height: int
    bitrate: int
    size: int
    file: str | None = None  # a committed file under sandbox/media


@dataclass(frozen=True, slots=True)
class FixturePost:
    """A post of the catalogue."""

    id: str
    author: str
    description: str
    created: int
    views: int
    likes: int
    comments: int
    shares: int
    saves: int
    status: Status = Status.OK
    duration: int = 0  # seconds; 0 for slideshows
    width: int = 0
    height: int = 0
    renditions: tuple[Rendition, ...] = ()
    images: tuple[str, ...] = ()  # files under sandbox/media, for photo posts
    music_title: str = "original sound"
    music_file: str = "sound.mp3"
    music_id: str = "7000000000000000001"
    hashtags: tuple[str, ...] = ()
    region: str = "US"

    @property
    def is_photo(self) -> bool:
        """Whether this is a photo slideshow."""
        return bool(self.images)

    @property
    def url(self) -> str:
        """The canonical web URL."""
        return f"https://www.tiktok.com/@{self.author}/video/{self.id}"


@dataclass(frozen=True, slots=True)
class FixtureUser:
    """An account of the catalogue."""

    username: str
    nickname: str
    bio: str
    followers: int
    following: int
    likes: int
    videos: int
    verified: bool = False
    private: bool = False
    uid: str = "6784819479778378757"
    sec_uid: str = "MS4wLjABAAAAsandbox"


@dataclass(slots=True)
class Catalogue:
    """Everything the emulators know about."""

    posts: dict[str, FixturePost] = field(default_factory=dict)
    users: dict[str, FixtureUser] = field(default_factory=dict)
    short_links: dict[str, str | None] = field(default_factory=dict)  # code -> post id (None: dead)
    hashtags: dict[str, list[str]] = field(default_factory=dict)  # tag -> post ids, newest first

    def add(self, post: FixturePost) -> FixturePost:
        """Add a post and index its hashtags."""
        self.posts[post.id] = post
        for tag in post.hashtags:
            self.hashtags.setdefault(tag, []).append(post.id)
        return post


def rounded(count: int) -> int:
    """A counter as real pages round `stats` (427682 -> 427700, four significant digits); statsV2 is exact."""
    digits = len(str(abs(count)))
    return count if digits <= 4 else round(count, 4 - digits)


MB = 1000 * 1000
T0 = 1_700_000_000  # 2023-11-14, the catalogue's epoch


def build_catalogue() -> Catalogue:
    """The default catalogue; the same for every emulator so their answers agree."""
    cat = Catalogue()
    cat.users["sandbox.cook"] = FixtureUser(
        "sandbox.cook",
        "Sandbox Cook",
        "Recipes from the loopback kitchen",
        followers=1_234_567,
        following=321,
        likes=98_765_432,
        videos=42,
        verified=True,
        uid="6784819479778378757",
        sec_uid="MS4wLjABAAAAcook",
    )
    cat.users["secret.agent"] = FixtureUser(
        "secret.agent",
        "Agent",
        "",
        followers=12,
        following=3,
        likes=40,
        videos=2,
        private=True,
        uid="6784819479778378758",
        sec_uid="MS4wLjABAAAAagent",
    )
    cat.users["travel_bug-1"] = FixtureUser(
        "travel_bug-1",
        "Travel Bug",
        "Photos from everywhere",
        followers=45_000,
        following=100,
        likes=2_100_000,
        videos=300,
        uid="6784819479778378759",
        sec_uid="MS4wLjABAAAAtravel",
    )
    clip = cat.add(
        FixturePost(
            id=post_id_at(T0, 1),
            author="sandbox.cook",
            description="Pasta in 30 seconds #pasta #cooking <b>&amp;</b>",
            created=T0,
            views=1_534_000,
            likes=240_100,
            comments=1_320,
            shares=905,
            saves=5_012,
            duration=3,
            width=320,
            height=568,
            renditions=(
                Rendition("normal_540_0", "bytevc2", 576, 1024, 500_000, 2 * MB),
                Rendition("normal_720_0", "h265", 720, 1280, 900_000, 3 * MB),
                Rendition("lowest_540_0", "h264", 320, 568, 300_000, 0, file="clip.mp4"),
            ),
            hashtags=("pasta", "cooking"),
        )
    )
    cat.add(
        FixturePost(
            id=post_id_at(T0 + 86_400, 2),
            author="sandbox.cook",
            description="The long one: a 4K tour of the kitchen #cooking",
            created=T0 + 86_400,
            views=88_000,
            likes=7_100,
            comments=210,
            shares=33,
            saves=120,
            duration=95,
            width=2160,
            height=3840,
            renditions=(
                Rendition("adapt_2160_1", "h264", 2160, 3840, 6_000_000, 64 * MB),
                Rendition("normal_1080_0", "h264", 1080, 1920, 3_000_000, 30 * MB),
                Rendition("normal_720_0", "h264", 720, 1280, 1_500_000, 12 * MB),
                Rendition("lowest_540_0", "h264", 540, 960, 600_000, 6 * MB),
            ),
            hashtags=("cooking",),
        )
    )
    slides = cat.add(
        FixturePost(
            id=post_id_at(T0 + 2 * 86_400, 3),
            author="travel_bug-1",
            description="Three views of the same hill #travel",
            created=T0 + 2 * 86_400,
            views=12_000,
            likes=1_500,
            comments=40,
            shares=12,
            saves=300,
            images=("photo1.jpg", "photo2.jpg", "photo3.jpg"),
            music_title="Hill song",
            music_id="7000000000000000002",
            hashtags=("travel",),
        )
    )
    cat.add(
        FixturePost(
            id=post_id_at(T0 + 3 * 86_400, 4),
            author="travel_bug-1",
            description="Twelve photos, two albums #travel",
            created=T0 + 3 * 86_400,
            views=9_000,
            likes=800,
            comments=12,
            shares=3,
            saves=50,
            images=tuple(f"photo{1 + i % 3}.jpg" for i in range(12)),
            music_title="Album song",
            music_id="7000000000000000003",
            hashtags=("travel",),
        )
    )
    for status, serial in (
        (Status.PRIVATE, 5),
        (Status.PRIVATE_ACCOUNT, 6),
        (Status.DELETED, 7),
        (Status.REGION, 8),
        (Status.AGE, 9),
    ):
        cat.add(
            FixturePost(
                id=post_id_at(T0 + 4 * 86_400, serial),
                author="secret.agent" if status is Status.PRIVATE_ACCOUNT else "sandbox.cook",
                description=f"A post that is {status.value}",
                created=T0 + 4 * 86_400,
                views=10,
                likes=1,
                comments=0,
                shares=0,
                saves=0,
                status=status,
                duration=3,
                width=320,
                height=568,
                renditions=(Rendition("lowest_540_0", "h264", 320, 568, 300_000, 0, file="clip.mp4"),),
            )
        )
    # As real 2025-26 posts: 720p and 1080p only in H.265 (bytevc1), H.264 tops out at 540p.
    cat.add(
        FixturePost(
            id=post_id_at(T0 + 4 * 86_400, 10),
            author="sandbox.hevc",
            description="Shot on a new phone: the sharp copies are H.265 only",
            created=T0 + 4 * 86_400,
            views=427_682,
            likes=31_337,
            comments=99,
            shares=12,
            saves=7,
            duration=3,
            width=1080,
            height=1920,
            renditions=(
                Rendition("normal_1080_0", "h265", 1080, 1920, 1_800_000, 0, file="clip.mp4"),
                Rendition("normal_720_0", "h265", 720, 1280, 1_100_000, 0, file="clip.mp4"),
                Rendition("normal_540_1", "bytevc2", 576, 1024, 500_000, 0, file="clip.mp4"),
                Rendition("lowest_540_0", "h264", 540, 960, 700_000, 0, file="clip.mp4"),
            ),
        )
    )
    # A busy hashtag, for paging: 25 small posts.
    for i in range(25):
        cat.add(
            FixturePost(
                id=post_id_at(T0 + 5 * 86_400 + i * 60, 100 + i),
                author="sandbox.cook",
                description=f"Dish number {i + 1} #food",
                created=T0 + 5 * 86_400 + i * 60,
                views=1000 * (i + 1),
                likes=100 * (i + 1),
                comments=i,
                shares=i // 2,
                saves=i * 3,
                duration=3,
                width=320,
                height=568,
                renditions=(Rendition("lowest_540_0", "h264", 320, 568, 300_000, 0, file="clip.mp4"),),
                hashtags=("food",),
            )
        )
    cat.short_links.update(
        {
            "ZMclip01": clip.id,
            "ZTslide01": slides.id,
            "ZSbig0001": post_id_at(T0 + 86_400, 2),
            "ZMdead000": None,
            "ZMhevc001": post_id_at(T0 + 4 * 86_400, 10),
        }
    )
    return cat


def synthetic_posts(
    count: int, *, size: int, serial: int = 1_000, author: str = "sandbox.bench"
) -> list[FixturePost]:
    """`count` distinct video posts of `size` synthesised bytes each (benchmarks add them to a catalogue).

    Ids start at `serial` on a day of their own, so they never collide with the default catalogue's.
    """
    created = T0 + 30 * 86_400
    return [
        FixturePost(
            id=post_id_at(created, serial + i),
            author=author,
            description=f"Synthetic post {i + 1}",
            created=created,
            views=100 * (i + 1),
            likes=10 * (i + 1),
            comments=i,
            shares=i,
            saves=i,
            duration=10,
            width=720,
            height=1280,
            renditions=(Rendition("normal_720_0", "h264", 720, 1280, 1_000_000, size),),
        )
        for i in range(count)
    ]


def catalogue_with(posts: list[FixturePost]) -> Catalogue:
    """The default catalogue plus `posts` (a fresh copy: the shared CATALOGUE is left alone)."""
    cat = build_catalogue()
    for post in posts:
        cat.add(post)
    return cat


CATALOGUE = build_catalogue()

"""One typed item per kind of record; the store collection and key field travel with it.

Every item is a dataclass read and written through ``itemadapter``. Class variables say
where the record goes (``collection``), which field holds the source id (``key_field``,
unique in the store), which fields validation requires (``required``) and which hold dates
to normalise (``date_fields``; a date field ``d`` may have companions ``d_raw``,
``d_precision`` and ``d_approximate``, which validation fills). Validation gives every field
the type declared here. ``revision`` and ``fetched_at`` are provenance, not content:
the store pipeline moves them into the stored record's ``_meta``.

To add a kind: subclass ``ContentItem``, set the class variables, add the collection and
its key field to ``contentcrawl.store.base.COLLECTION_KEYS``.

What else flows through the pipelines (batches of records, deletion marks) is in
``contentcrawl.batches``.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

Json = dict[str, Any]


@dataclass(kw_only=True)
class ContentItem:
    """Base of every record item: provenance fields shared by all kinds."""

    collection: ClassVar[str]
    key_field: ClassVar[str]
    source: ClassVar[str]
    required: ClassVar[tuple[str, ...]] = ()
    date_fields: ClassVar[tuple[str, ...]] = ()

    # The source's own revision counter when it has one (Open Library dumps do).
    revision: int | None = None
    # ISO-8601 UTC time the payload was fetched; the store pipeline fills it if unset.
    fetched_at: str | None = None


@dataclass(kw_only=True)
class ImagesMixin:
    """Fields read and written by the images pipeline (Scrapy's ImagesPipeline contract)."""

    image_urls: list[str] = field(default_factory=list)
    images: list[Json] = field(default_factory=list)


# --- TMDB ----------------------------------------------------------------------


@dataclass(kw_only=True)
class MovieItem(ImagesMixin, ContentItem):
    collection: ClassVar[str] = "movies"
    key_field: ClassVar[str] = "tmdb_id"
    source: ClassVar[str] = "tmdb"
    required: ClassVar[tuple[str, ...]] = ("tmdb_id", "title")
    date_fields: ClassVar[tuple[str, ...]] = ("release_date",)

    tmdb_id: int
    imdb_id: str | None = None
    title: str | None = None
    original_title: str | None = None
    original_language: str | None = None
    overview: str | None = None
    tagline: str | None = None
    status: str | None = None
    release_date: str | None = None
    runtime: int | None = None
    budget: int | None = None
    revenue: int | None = None
    popularity: float | None = None
    vote_average: float | None = None
    vote_count: int | None = None
    adult: bool | None = None
    video: bool | None = None
    homepage: str | None = None
    genres: list[Json] = field(default_factory=list)
    spoken_languages: list[Json] = field(default_factory=list)
    production_countries: list[Json] = field(default_factory=list)
    production_companies: list[Json] = field(default_factory=list)
    origin_country: list[str] = field(default_factory=list)
    belongs_to_collection: Json | None = None
    keywords: list[Json] = field(default_factory=list)
    credits: Json = field(default_factory=dict)
    external_ids: Json = field(default_factory=dict)
    release_dates: list[Json] = field(default_factory=list)
    alternative_titles: list[Json] = field(default_factory=list)
    translations: list[Json] = field(default_factory=list)
    videos: list[Json] = field(default_factory=list)
    poster_path: str | None = None
    backdrop_path: str | None = None
    poster_url: str | None = None
    backdrop_url: str | None = None


@dataclass(kw_only=True)
class SeriesItem(ImagesMixin, ContentItem):
    collection: ClassVar[str] = "series"
    key_field: ClassVar[str] = "tmdb_id"
    source: ClassVar[str] = "tmdb"
    required: ClassVar[tuple[str, ...]] = ("tmdb_id", "name")
    date_fields: ClassVar[tuple[str, ...]] = ("first_air_date", "last_air_date")

    tmdb_id: int
    name: str | None = None
    original_name: str | None = None
    original_language: str | None = None
    overview: str | None = None
    tagline: str | None = None
    status: str | None = None
    type: str | None = None
    first_air_date: str | None = None
    last_air_date: str | None = None
    in_production: bool | None = None
    number_of_seasons: int | None = None
    number_of_episodes: int | None = None
    episode_run_time: list[int] = field(default_factory=list)
    genres: list[Json] = field(default_factory=list)
    networks: list[Json] = field(default_factory=list)
    production_companies: list[Json] = field(default_factory=list)
    origin_country: list[str] = field(default_factory=list)
    production_countries: list[Json] = field(default_factory=list)
    spoken_languages: list[Json] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    created_by: list[Json] = field(default_factory=list)
    seasons: list[Json] = field(default_factory=list)
    last_episode_to_air: Json | None = None
    next_episode_to_air: Json | None = None
    alternative_titles: list[Json] = field(default_factory=list)
    credits: Json = field(default_factory=dict)
    keywords: list[Json] = field(default_factory=list)
    external_ids: Json = field(default_factory=dict)
    content_ratings: list[Json] = field(default_factory=list)
    popularity: float | None = None
    vote_average: float | None = None
    vote_count: int | None = None
    adult: bool | None = None
    homepage: str | None = None
    poster_path: str | None = None
    backdrop_path: str | None = None
    poster_url: str | None = None
    backdrop_url: str | None = None


@dataclass(kw_only=True)
class PersonItem(ImagesMixin, ContentItem):
    collection: ClassVar[str] = "people"
    key_field: ClassVar[str] = "tmdb_id"
    source: ClassVar[str] = "tmdb"
    required: ClassVar[tuple[str, ...]] = ("tmdb_id", "name")
    date_fields: ClassVar[tuple[str, ...]] = ("birthday", "deathday")

    tmdb_id: int
    imdb_id: str | None = None
    name: str | None = None
    also_known_as: list[str] = field(default_factory=list)
    biography: str | None = None
    birthday: str | None = None
    deathday: str | None = None
    place_of_birth: str | None = None
    gender: int | None = None
    known_for_department: str | None = None
    homepage: str | None = None
    popularity: float | None = None
    adult: bool | None = None
    external_ids: Json = field(default_factory=dict)
    movie_credits: Json = field(default_factory=dict)
    tv_credits: Json = field(default_factory=dict)
    profile_path: str | None = None
    profile_url: str | None = None


@dataclass(kw_only=True)
class CollectionItem(ImagesMixin, ContentItem):
    collection: ClassVar[str] = "collections"
    key_field: ClassVar[str] = "tmdb_id"
    source: ClassVar[str] = "tmdb"
    required: ClassVar[tuple[str, ...]] = ("tmdb_id", "name")

    tmdb_id: int
    name: str | None = None
    overview: str | None = None
    parts: list[Json] = field(default_factory=list)
    poster_path: str | None = None
    backdrop_path: str | None = None
    poster_url: str | None = None
    backdrop_url: str | None = None


@dataclass(kw_only=True)
class CompanyItem(ImagesMixin, ContentItem):
    collection: ClassVar[str] = "companies"
    key_field: ClassVar[str] = "tmdb_id"
    source: ClassVar[str] = "tmdb"
    required: ClassVar[tuple[str, ...]] = ("tmdb_id", "name")

    tmdb_id: int
    name: str | None = None
    description: str | None = None
    headquarters: str | None = None
    homepage: str | None = None
    origin_country: str | None = None
    parent_company: Json | None = None
    logo_path: str | None = None
    logo_url: str | None = None


@dataclass(kw_only=True)
class NetworkItem(ImagesMixin, ContentItem):
    collection: ClassVar[str] = "networks"
    key_field: ClassVar[str] = "tmdb_id"
    source: ClassVar[str] = "tmdb"
    required: ClassVar[tuple[str, ...]] = ("tmdb_id", "name")

    tmdb_id: int
    name: str | None = None
    headquarters: str | None = None
    homepage: str | None = None
    origin_country: str | None = None
    logo_path: str | None = None
    logo_url: str | None = None


@dataclass(kw_only=True)
class KeywordItem(ContentItem):
    collection: ClassVar[str] = "keywords"
    key_field: ClassVar[str] = "tmdb_id"
    source: ClassVar[str] = "tmdb"
    required: ClassVar[tuple[str, ...]] = ("tmdb_id", "name")

    tmdb_id: int
    name: str | None = None


# --- IGDB ----------------------------------------------------------------------


@dataclass(kw_only=True)
class GameItem(ImagesMixin, ContentItem):
    collection: ClassVar[str] = "games"
    key_field: ClassVar[str] = "igdb_id"
    source: ClassVar[str] = "igdb"
    required: ClassVar[tuple[str, ...]] = ("igdb_id", "name")
    date_fields: ClassVar[tuple[str, ...]] = ("first_release_date",)

    igdb_id: int
    name: str | None = None
    slug: str | None = None
    url: str | None = None
    summary: str | None = None
    storyline: str | None = None
    first_release_date: str | None = None
    genres: list[str] = field(default_factory=list)
    themes: list[str] = field(default_factory=list)
    game_modes: list[str] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    involved_companies: list[Json] = field(default_factory=list)
    developers: list[str] = field(default_factory=list)
    publishers: list[str] = field(default_factory=list)
    franchises: list[str] = field(default_factory=list)
    collections: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    player_perspectives: list[str] = field(default_factory=list)
    game_engines: list[str] = field(default_factory=list)
    # IGDB's game category enum (0 main game, 1 DLC, 2 expansion, …; ``game_type`` since 2024).
    category: int | None = None
    parent_game_id: int | None = None
    similar_game_ids: list[int] = field(default_factory=list)
    dlc_ids: list[int] = field(default_factory=list)
    expansion_ids: list[int] = field(default_factory=list)
    websites: list[str] = field(default_factory=list)
    alternative_names: list[str] = field(default_factory=list)
    external_ids: list[Json] = field(default_factory=list)
    rating: float | None = None
    rating_count: int | None = None
    aggregated_rating: float | None = None
    aggregated_rating_count: int | None = None
    total_rating: float | None = None
    total_rating_count: int | None = None
    cover_url: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


# --- MusicBrainz -----------------------------------------------------------------


@dataclass(kw_only=True)
class ArtistItem(ContentItem):
    collection: ClassVar[str] = "artists"
    key_field: ClassVar[str] = "mbid"
    source: ClassVar[str] = "musicbrainz"
    required: ClassVar[tuple[str, ...]] = ("mbid", "name")
    date_fields: ClassVar[tuple[str, ...]] = ("begin_date", "end_date")

    mbid: str
    name: str | None = None
    sort_name: str | None = None
    type: str | None = None
    gender: str | None = None
    country: str | None = None
    area: Json | None = None
    begin_area: Json | None = None
    end_area: Json | None = None
    begin_date: str | None = None
    end_date: str | None = None
    ended: bool | None = None
    disambiguation: str | None = None
    aliases: list[Json] = field(default_factory=list)
    tags: list[Json] = field(default_factory=list)
    genres: list[Json] = field(default_factory=list)
    rating: Json | None = None
    urls: list[Json] = field(default_factory=list)
    isnis: list[str] = field(default_factory=list)
    ipis: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class AlbumItem(ContentItem):
    """A MusicBrainz release group (the "album" a listener means)."""

    collection: ClassVar[str] = "albums"
    key_field: ClassVar[str] = "mbid"
    source: ClassVar[str] = "musicbrainz"
    required: ClassVar[tuple[str, ...]] = ("mbid", "title")
    date_fields: ClassVar[tuple[str, ...]] = ("first_release_date",)

    mbid: str
    title: str | None = None
    primary_type: str | None = None
    secondary_types: list[str] = field(default_factory=list)
    first_release_date: str | None = None
    disambiguation: str | None = None
    artist_credit: list[Json] = field(default_factory=list)
    artist_mbids: list[str] = field(default_factory=list)
    tags: list[Json] = field(default_factory=list)
    genres: list[Json] = field(default_factory=list)
    rating: Json | None = None
    urls: list[Json] = field(default_factory=list)


# --- Open Library -----------------------------------------------------------------


@dataclass(kw_only=True)
class BookItem(ImagesMixin, ContentItem):
    """An Open Library edition: one printing of a work, with its ISBNs."""

    collection: ClassVar[str] = "books"
    key_field: ClassVar[str] = "ol_key"
    source: ClassVar[str] = "openlibrary"
    required: ClassVar[tuple[str, ...]] = ("ol_key", "title")
    date_fields: ClassVar[tuple[str, ...]] = ("publish_date",)

    ol_key: str
    title: str | None = None
    subtitle: str | None = None
    author_keys: list[str] = field(default_factory=list)
    author_names: list[str] = field(default_factory=list)
    work_key: str | None = None
    # The dump's free-text date ("c1985", "March 3, 2001") next to its normalised form,
    # its precision (year, month, day) and whether the catalogue guessed ("[1985?]").
    publish_date_raw: str | None = None
    publish_date: str | None = None
    publish_date_precision: str | None = None
    publish_date_approximate: bool | None = None
    copyright_date: str | None = None
    edition_name: str | None = None
    by_statement: str | None = None
    description: str | None = None
    notes: str | None = None
    first_sentence: str | None = None
    physical_format: str | None = None
    physical_dimensions: str | None = None
    weight: str | None = None
    pagination: str | None = None
    publishers: list[str] = field(default_factory=list)
    publish_places: list[str] = field(default_factory=list)
    publish_country: str | None = None
    series: list[str] = field(default_factory=list)
    contributors: list[Json] = field(default_factory=list)
    other_titles: list[str] = field(default_factory=list)
    work_titles: list[str] = field(default_factory=list)
    translation_of: str | None = None
    translated_from: list[str] = field(default_factory=list)
    table_of_contents: list[Json] = field(default_factory=list)
    isbn_10: list[str] = field(default_factory=list)
    isbn_13: list[str] = field(default_factory=list)
    number_of_pages: int | None = None
    languages: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    subject_places: list[str] = field(default_factory=list)
    subject_people: list[str] = field(default_factory=list)
    subject_times: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    lc_classifications: list[str] = field(default_factory=list)
    dewey_decimal_class: list[str] = field(default_factory=list)
    classifications: Json = field(default_factory=dict)
    identifiers: Json = field(default_factory=dict)
    links: list[Json] = field(default_factory=list)
    cover_ids: list[int] = field(default_factory=list)
    cover_urls: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class WorkItem(ImagesMixin, ContentItem):
    collection: ClassVar[str] = "works"
    key_field: ClassVar[str] = "ol_key"
    source: ClassVar[str] = "openlibrary"
    required: ClassVar[tuple[str, ...]] = ("ol_key", "title")
    date_fields: ClassVar[tuple[str, ...]] = ("first_publish_date",)

    ol_key: str
    title: str | None = None
    subtitle: str | None = None
    author_keys: list[str] = field(default_factory=list)
    description: str | None = None
    first_sentence: str | None = None
    first_publish_date_raw: str | None = None
    first_publish_date: str | None = None
    first_publish_date_precision: str | None = None
    first_publish_date_approximate: bool | None = None
    lc_classifications: list[str] = field(default_factory=list)
    dewey_number: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    subject_places: list[str] = field(default_factory=list)
    subject_people: list[str] = field(default_factory=list)
    subject_times: list[str] = field(default_factory=list)
    links: list[Json] = field(default_factory=list)
    cover_ids: list[int] = field(default_factory=list)
    cover_urls: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class AuthorItem(ImagesMixin, ContentItem):
    collection: ClassVar[str] = "authors"
    key_field: ClassVar[str] = "ol_key"
    source: ClassVar[str] = "openlibrary"
    required: ClassVar[tuple[str, ...]] = ("ol_key", "name")
    date_fields: ClassVar[tuple[str, ...]] = ("birth_date", "death_date", "date")

    ol_key: str
    name: str | None = None
    personal_name: str | None = None
    fuller_name: str | None = None
    # An honorific or epithet: "Sir", "Saint", "Duke of Wellington".
    title: str | None = None
    alternate_names: list[str] = field(default_factory=list)
    # Each date as the catalogue wrote it ("ca. 1480", "4th cent."), normalised, its
    # precision and whether it is a guess; ``date`` is a lone span when birth and death are
    # not known apart ("fl. 1314").
    birth_date_raw: str | None = None
    birth_date: str | None = None
    birth_date_precision: str | None = None
    birth_date_approximate: bool | None = None
    death_date_raw: str | None = None
    death_date: str | None = None
    death_date_precision: str | None = None
    death_date_approximate: bool | None = None
    date_raw: str | None = None
    date: str | None = None
    date_precision: str | None = None
    date_approximate: bool | None = None
    bio: str | None = None
    wikipedia: str | None = None
    links: list[Json] = field(default_factory=list)
    remote_ids: Json = field(default_factory=dict)
    photo_ids: list[int] = field(default_factory=list)
    photo_urls: list[str] = field(default_factory=list)


ITEM_CLASSES: tuple[type[ContentItem], ...] = (
    MovieItem,
    SeriesItem,
    PersonItem,
    CollectionItem,
    CompanyItem,
    NetworkItem,
    KeywordItem,
    GameItem,
    ArtistItem,
    AlbumItem,
    BookItem,
    WorkItem,
    AuthorItem,
)

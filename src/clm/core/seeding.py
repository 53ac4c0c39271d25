"""A deterministic synthetic customer population, for demos and benchmarks.

`seed_population(contacts=N, seed=S, events_per_contact=E)` fills an empty database with
demo users, companies, contacts (names across cultures, places, bands, interests, sources
with UTM), consent rows and about N*E timeline events over the three years before the
anchor date: page views, form submissions, email opens, orders (one-time buyers, loyal
repeaters and buyers who lapsed more than a year ago), support tickets and NPS answers.

Promises:
- The same seed, anchor date and N give the same rows. The data are generated in fixed
  chunks of contacts, each from its own random stream, so the first contacts of a larger
  population are the same as those of a smaller one.
- Rows are generated with NumPy and written with bulk inserts (SQLite: executemany of a
  raw INSERT, one transaction per ~50k rows; PostgreSQL: COPY), not through the services:
  1M contacts / 10M events take minutes, not hours. Timeline consumers (lifecycle,
  analytics …) are therefore NOT called; the seed_demo command runs each app's
  `after_seed_demo` hook instead.
- Email addresses and company domains use the reserved `.example` top-level domain, so no
  demo message can ever reach a real person. Order amounts are decimal strings in USD.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import islice
from typing import Any

import numpy as np
import phonenumbers
from django.db import connection, models, transaction


def _w(text: str) -> list[str]:
    return text.split()


CHUNK_CONTACTS = 10_000  # fixed: chunk k always holds the same contacts for a given seed
ROWS_PER_TRANSACTION = 50_000
DEFER_INDEXES_FROM = 100_000  # contacts
YEAR_US = 365 * 86_400 * 1_000_000
DAY_US = 86_400 * 1_000_000
HOUR_US = 3_600 * 1_000_000

# ---------------------------------------------------------------------------- reference data
# First names mix genders; a few carry accents on purpose (search and CSV must cope).
NAMES: dict[str, tuple[list[str], list[str]]] = {
    "anglo": (
        _w("James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Susan "
        "Emily Daniel Olivia Matthew Sophie Jack Chloe Liam Grace Noah Ava Ethan"),
        _w("Smith Johnson Williams Brown Jones Miller Davis Wilson Taylor Anderson Thomas Moore "
        "Martin Jackson Thompson White Harris Clark Lewis Walker Hall Young King Wright")),
    "hispanic": (
        _w("María José Juan Ana Luis Carmen Carlos Lucía Javier Sofía Miguel Valentina Diego "
        "Isabella Alejandro Camila Pablo Elena Andrés Gabriela"),
        _w("García Rodríguez Martínez López González Hernández Pérez Sánchez Ramírez Torres "
        "Flores Rivera Gómez Díaz Morales Ortiz Castro Romero Vargas Ruiz")),
    "german": (
        _w("Lukas Anna Leon Marie Felix Sophie Jonas Emma Paul Mia Maximilian Hannah Jürgen "
        "Lena Tobias Laura Niklas Katharina Stefan Julia"),
        _w("Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch "
        "Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger")),
    "french": (
        _w("Louis Camille Gabriel Léa Hugo Manon Arthur Chloé Jules Inès Lucas Juliette Théo "
        "Margaux Antoine Élodie Nicolas Céline Mathieu Amélie"),
        _w("Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent "
        "Lefèvre Michel Garcia David Bertrand Roux Vincent Fournier")),
    "italian": (
        _w("Francesco Giulia Alessandro Sofia Lorenzo Aurora Matteo Alice Leonardo Ginevra Marco "
        "Chiara Andrea Martina Davide Francesca Riccardo Elisa Simone Sara"),
        ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
         "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa",
         "Giordano", "Rizzo", "Lombardi", "Moretti"]),
    "portuguese": (
        _w("João Maria Pedro Ana Lucas Beatriz Gabriel Mariana Rafael Larissa Tiago Inês Bruno "
        "Fernanda Rodrigo Letícia Miguel Juliana Gonçalo Carolina"),
        _w("Silva Santos Oliveira Souza Pereira Costa Ferreira Rodrigues Almeida Nascimento "
        "Lima Araújo Carvalho Gomes Martins Rocha Ribeiro Alves Monteiro Mendes")),
    "dutch": (
        _w("Daan Emma Sem Julia Lucas Mila Levi Tess Finn Sara Bram Anna Thijs Eva Jesse Lotte "
        "Ruben Fleur Sven Noor"),
        ["de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen",
         "Visser", "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters",
         "Hendriks", "van Leeuwen", "Dekker", "Brouwer"]),
    "nordic": (
        _w("Erik Astrid Lars Ingrid Nils Freja Oskar Sigrid Magnus Elin Anders Maja Henrik Linnea "
        "Mikkel Ida Søren Saga Bjørn Karin"),
        _w("Andersson Johansson Karlsson Nilsson Eriksson Larsson Olsen Hansen Nielsen Jensen "
        "Pedersen Berg Lindberg Lindqvist Holm Dahl Strand Lund Nygaard Halvorsen")),
    "polish": (
        _w("Jakub Zuzanna Kacper Julia Szymon Maja Filip Zofia Jan Hanna Mateusz Aleksandra "
        "Michał Natalia Piotr Agnieszka Tomasz Katarzyna Paweł Magdalena"),
        _w("Nowak Kowalski Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński "
        "Szymański Woźniak Dąbrowski Kozłowski Jankowski Mazur Kwiatkowski Krawczyk "
        "Piotrowski Grabowski Nowakowski Pawłowski")),
    "indian": (
        _w("Aarav Priya Vivaan Ananya Aditya Diya Arjun Isha Rohan Kavya Rahul Sneha Vikram "
        "Pooja Sanjay Neha Karan Aishwarya Amit Meera"),
        _w("Sharma Verma Patel Gupta Singh Kumar Reddy Iyer Nair Rao Mehta Joshi Desai Shah "
        "Chopra Malhotra Banerjee Chatterjee Pillai Kapoor")),
    "chinese": (
        _w("Wei Fang Jie Li Hao Min Lei Jing Yang Xin Jun Hui Tao Yan Ming Ying Bo Lin Chen Mei"),
        _w("Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo He Lin Gao Luo")),
    "japanese": (
        _w("Haruto Yui Sota Hina Yuto Aoi Riku Sakura Kenji Yuki Takumi Mei Daiki Akari Hiroshi "
        "Emi Kaito Nanami Ren Rin"),
        _w("Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Kato Yoshida "
        "Yamada Sasaki Yamaguchi Matsumoto Inoue Kimura Hayashi Shimizu Mori")),
    "korean": (
        _w("Min-jun Seo-yeon Ji-ho Ha-eun Do-yun Ji-woo Seo-jun Soo-ah Joon-young Yuna Hyun-woo "
        "Eun-ji Sung-min Da-eun Tae-yang Hye-jin"),
        _w("Kim Lee Park Choi Jung Kang Cho Yoon Jang Lim Han Oh Seo Shin Kwon Hwang")),
    "arabic": (
        _w("Mohammed Fatima Ahmed Aisha Omar Mariam Ali Layla Youssef Noor Hassan Sara Khalid "
        "Huda Ibrahim Salma Karim Amira Tariq Yasmin"),
        _w("Al-Sayed Haddad Mansour Khalil Nasser Saleh Hassan Farouk Aziz Rahman Hamdan "
        "Qasim Sabbagh Karam Darwish Najjar Bakr Suleiman Youssef Amin")),
    "african": (
        _w("Chinedu Ngozi Oluwaseun Amara Emeka Chiamaka Tunde Funmilayo Kwame Wanjiru Kofi "
        "Achieng Baraka Zawadi Jabari Nia Thabo Lerato Sipho Nomvula"),
        _w("Okafor Adeyemi Okonkwo Balogun Eze Nwosu Mensah Otieno Kamau Mwangi Wanjiku "
        "Odhiambo Njoroge Dlamini Ndlovu Mokoena Nkosi Abubakar Bello Ibrahim")),
    "turkish": (
        _w("Mehmet Zeynep Mustafa Elif Ahmet Ayşe Emre Merve Can Selin Burak Esra Murat Deniz "
        "Oğuz Büşra"),
        _w("Yılmaz Kaya Demir Şahin Çelik Yıldız Yıldırım Öztürk Aydın Özdemir Arslan Doğan "  # noqa: RUF001
        "Kılıç Aslan Çetin Koç")),  # noqa: RUF001 - Turkish dotless i
}
CULTURES = list(NAMES)

# (country, weight, culture, [(region, city, timezone), ...])
COUNTRIES: list[tuple[str, float, str, list[tuple[str, str, str]]]] = [
    ("US", 24, "anglo", [
        ("California", "San Francisco", "America/Los_Angeles"),
        ("New York", "New York", "America/New_York"), ("Texas", "Austin", "America/Chicago"),
        ("Illinois", "Chicago", "America/Chicago"), ("Washington", "Seattle", "America/Los_Angeles"),
        ("Massachusetts", "Boston", "America/New_York"), ("Colorado", "Denver", "America/Denver")]),
    ("GB", 8, "anglo", [
        ("England", "London", "Europe/London"), ("England", "Manchester", "Europe/London"),
        ("Scotland", "Edinburgh", "Europe/London")]),
    ("CA", 4, "anglo", [
        ("Ontario", "Toronto", "America/Toronto"),
        ("British Columbia", "Vancouver", "America/Vancouver"),
        ("Quebec", "Montréal", "America/Toronto")]),
    ("AU", 3, "anglo", [
        ("New South Wales", "Sydney", "Australia/Sydney"),
        ("Victoria", "Melbourne", "Australia/Melbourne")]),
    ("IE", 1, "anglo", [("Leinster", "Dublin", "Europe/Dublin")]),
    ("DE", 8, "german", [
        ("Berlin", "Berlin", "Europe/Berlin"), ("Bavaria", "Munich", "Europe/Berlin"),
        ("Hamburg", "Hamburg", "Europe/Berlin"), ("Hesse", "Frankfurt", "Europe/Berlin")]),
    ("AT", 1, "german", [("Vienna", "Vienna", "Europe/Vienna")]),
    ("CH", 1, "german", [("Zurich", "Zurich", "Europe/Zurich")]),
    ("FR", 6, "french", [
        ("Île-de-France", "Paris", "Europe/Paris"),
        ("Auvergne-Rhône-Alpes", "Lyon", "Europe/Paris"), ("Occitanie", "Toulouse", "Europe/Paris")]),
    ("ES", 4, "hispanic", [
        ("Madrid", "Madrid", "Europe/Madrid"), ("Catalonia", "Barcelona", "Europe/Madrid"),
        ("Andalusia", "Seville", "Europe/Madrid")]),
    ("MX", 3, "hispanic", [
        ("Mexico City", "Mexico City", "America/Mexico_City"),
        ("Jalisco", "Guadalajara", "America/Mexico_City")]),
    ("AR", 1, "hispanic", [
        ("Buenos Aires", "Buenos Aires", "America/Argentina/Buenos_Aires")]),
    ("CO", 1, "hispanic", [("Bogotá D.C.", "Bogotá", "America/Bogota")]),
    ("BR", 4, "portuguese", [
        ("São Paulo", "São Paulo", "America/Sao_Paulo"),
        ("Rio de Janeiro", "Rio de Janeiro", "America/Sao_Paulo")]),
    ("PT", 1, "portuguese", [("Lisbon", "Lisbon", "Europe/Lisbon")]),
    ("IT", 3, "italian", [
        ("Lombardy", "Milan", "Europe/Rome"), ("Lazio", "Rome", "Europe/Rome")]),
    ("NL", 3, "dutch", [
        ("North Holland", "Amsterdam", "Europe/Amsterdam"),
        ("South Holland", "Rotterdam", "Europe/Amsterdam")]),
    ("SE", 2, "nordic", [("Stockholm", "Stockholm", "Europe/Stockholm")]),
    ("NO", 1, "nordic", [("Oslo", "Oslo", "Europe/Oslo")]),
    ("DK", 1, "nordic", [("Capital Region", "Copenhagen", "Europe/Copenhagen")]),
    ("PL", 2, "polish", [
        ("Masovia", "Warsaw", "Europe/Warsaw"), ("Lesser Poland", "Kraków", "Europe/Warsaw")]),
    ("IN", 5, "indian", [
        ("Karnataka", "Bengaluru", "Asia/Kolkata"), ("Maharashtra", "Mumbai", "Asia/Kolkata"),
        ("Delhi", "New Delhi", "Asia/Kolkata")]),
    ("CN", 2, "chinese", [
        ("Shanghai", "Shanghai", "Asia/Shanghai"), ("Beijing", "Beijing", "Asia/Shanghai")]),
    ("SG", 1, "chinese", [("Singapore", "Singapore", "Asia/Singapore")]),
    ("JP", 3, "japanese", [
        ("Tokyo", "Tokyo", "Asia/Tokyo"), ("Osaka", "Osaka", "Asia/Tokyo")]),
    ("KR", 1, "korean", [("Seoul", "Seoul", "Asia/Seoul")]),
    ("AE", 1, "arabic", [("Dubai", "Dubai", "Asia/Dubai")]),
    ("EG", 1, "arabic", [("Cairo", "Cairo", "Africa/Cairo")]),
    ("NG", 1, "african", [("Lagos", "Lagos", "Africa/Lagos")]),
    ("KE", 1, "african", [("Nairobi", "Nairobi", "Africa/Nairobi")]),
    ("ZA", 1, "african", [("Gauteng", "Johannesburg", "Africa/Johannesburg")]),
    ("TR", 1, "turkish", [("Istanbul", "Istanbul", "Europe/Istanbul")]),
]

COMPANY_WORDS = (
    _w("Northwind Bluepeak Ironwood Silverline Brightpath Cedar Harbor Summit Evergreen Redstone "
    "Lakeside Golden Oak Pioneer Starlight Riverbend Keystone Maple Horizon Granite Aurora "
    "Falcon Meridian Sterling Cobalt Atlas Juniper Willow Beacon Crescent Orion Vertex Nimbus "
    "Sequoia Polar Sandstone Copper Ember Tidewater Highland Clearwater Foxglove Quantum "
    "Blackbird Larkspur Windmill Sunrise Bramble Everest Lumen")
)
COMPANY_KINDS = [
    ("Logistics", "Transportation"), ("Labs", "Biotechnology"), ("Foods", "Food & Beverage"),
    ("Health", "Healthcare"), ("Analytics", "Software"), ("Systems", "Software"),
    ("Partners", "Consulting"), ("Retail", "Retail"), ("Studio", "Design"),
    ("Energy", "Energy"), ("Capital", "Financial Services"), ("Media", "Media"),
    ("Manufacturing", "Manufacturing"), ("Travel", "Travel & Hospitality"),
    ("Education", "Education"), ("Robotics", "Manufacturing"), ("Insurance", "Insurance"),
    ("Realty", "Real Estate"), ("Apparel", "Retail"), ("Networks", "Telecommunications"),
    ("Pharma", "Pharmaceuticals"), ("Outdoor", "Retail"), ("Legal", "Legal Services"),
    ("Games", "Entertainment"),
]
EMPLOYEE_BANDS = ["1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+"]
EMPLOYEE_WEIGHTS = [30, 30, 20, 12, 5, 3]
REVENUE_BANDS = ["<1M", "1M-10M", "10M-50M", "50M-250M", "250M-1B", "1B+"]
JOB_TITLES = (
    ["CEO", "CTO", "CFO", "Head of Marketing", "Marketing Manager", "Sales Director",
     "Account Executive", "Operations Manager", "Product Manager", "Software Engineer",
     "Data Analyst", "Office Manager", "Procurement Lead", "Customer Success Manager",
     "HR Manager", "Designer", "Founder", "VP Sales", "IT Administrator", "Consultant"]
)
AGE_BANDS = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
AGE_RANGES = [(18, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, 85)]
AGE_WEIGHTS = [12, 26, 23, 18, 12, 9]
INCOME_BANDS = ["<25k", "25k-50k", "50k-100k", "100k-200k", "200k+"]
INCOME_WEIGHTS = [15, 28, 33, 17, 7]
INTERESTS = (
    _w("running cooking travel photography gaming gardening fashion fitness music books tech "
    "home-decor outdoor yoga wine coffee pets parenting sustainability cycling design finance "
    "movies sports")
)
SOURCES = ["web", "campaign", "referral", "import", "api"]
SOURCE_WEIGHTS = [35, 28, 12, 15, 10]
UTM = [  # (utm_source, utm_medium)
    ("google", "cpc"), ("facebook", "social"), ("instagram", "social"), ("linkedin", "social"),
    ("newsletter", "email"), ("bing", "cpc"), ("partner-blog", "referral"), ("tiktok", "social"),
]
CAMPAIGNS = ["spring-sale", "summer-launch", "back-to-school", "black-friday", "holiday-gifts",
             "new-year", "webinar-series", "brand-awareness"]
REFERRERS = ["", "https://www.google.com/", "https://duckduckgo.com/", "https://news.example/",
             "https://blog.example/best-tools", "https://www.bing.com/"]
IMPORT_FILES = ["trade-show-2023.csv", "webinar-attendees.csv", "legacy-crm-export.csv",
                "partner-leads.csv"]
PAGES = ["/", "/pricing", "/products", "/products/starter-kit", "/products/pro-bundle",
         "/products/gift-card", "/blog/getting-started", "/blog/customer-stories", "/docs",
         "/about", "/contact", "/checkout", "/account", "/support"]
PAGE_WEIGHTS = [20, 10, 12, 8, 6, 3, 6, 4, 5, 3, 3, 6, 8, 6]
EMAIL_CAMPAIGNS = ["welcome-series", "weekly-newsletter", "product-update", "spring-sale",
                   "black-friday", "win-back", "loyalty-rewards", "webinar-invite"]
FORMS = [("subscribe", "newsletter-signup"), ("contact", "contact-us"),
         ("demo_request", "request-a-demo"), ("download", "ebook-download")]
FORM_WEIGHTS = [45, 20, 15, 20]
PRODUCTS = ["starter-kit", "pro-bundle", "gift-card", "refill-pack", "premium-plan",
            "accessory-set"]
TICKET_SUBJECTS = ["Where is my order?", "Refund request", "Cannot log in",
                   "Question about pricing", "Item arrived damaged", "Change delivery address",
                   "Invoice copy", "Feature question"]
TICKET_PRIORITIES = ["low", "normal", "high", "urgent"]
FREEMAIL = ["mail.example", "inbox.example", "post.example", "webmail.example"]
CONSENT_PURPOSES = ["email_marketing", "newsletter"]
POLICY_VERSIONS = ["2023-01", "2024-03", "2025-06"]

# Demo users: (username, role, team, first, last). Owners of contacts, by share.
DEMO_USERS = [
    ("maria", "manager", "East", "Maria", "Manager"),
    ("sam", "sales", "East", "Sam", "Seller"),
    ("sara", "sales", "West", "Sara", "Seller"),
    ("mark", "marketing", None, "Mark", "Marketer"),
    ("sue", "support", None, "Sue", "Supporter"),
]
OWNER_WEIGHTS = [10, 30, 30, 10, 5, 15]  # maria, sam, sara, mark, sue, nobody

# Event kinds, in a fixed order (the codes index this list).
KINDS = ["contact.created", "page.viewed", "email.opened", "form.submitted", "order.completed",
         "ticket.opened", "ticket.closed", "nps.answered"]
K_CREATED, K_PAGE, K_EMAIL, K_FORM, K_ORDER, K_TOPEN, K_TCLOSE, K_NPS = range(len(KINDS))
KIND_SOURCE = ["", "web", "email", "web", "shop", "helpdesk", "helpdesk", "survey"]

# Buyer types: never bought, one purchase, loyal repeat buyer, repeat buyer who lapsed.
NEVER, ONCE, LOYAL, LAPSED = range(4)
BUYER_WEIGHTS = [52, 26, 11, 11]


def _ascii(text: str) -> str:
    """Lower-case ASCII for email local parts ("Jürgen" → "jurgen", "De Luca" → "deluca")."""
    text = text.replace("ø", "o").replace("ß", "ss").replace("ł", "l").replace("ı", "i")  # noqa: RUF001
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _slug(text: str) -> str:
    return _ascii(text)


@cache
def _phone_range(country: str) -> tuple[str, int]:
    example = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
    nsn = phonenumbers.national_significant_number(example)
    k = 5 if country == "DK" else 6  # Danish mobile ranges are narrower
    return f"+{example.country_code}{nsn[:-k]}", k


def phone_number(country: str, n: int) -> str:
    """A valid E.164 mobile number of `country`: the n-th (mod 10^k) of its demo range."""
    prefix, k = _phone_range(country)
    return f"{prefix}{n % 10**k:0{k}d}"


def _probs(weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


# ------------------------------------------------------------------------------- the plan


@dataclass
class SeedReport:
    contacts: int = 0
    companies: int = 0
    events: int = 0
    consents: int = 0
    tag_links: int = 0
    seconds: float = 0.0
    counts_by_kind: dict[str, int] = field(default_factory=dict)


def anchor_for(today: date | None = None) -> datetime:
    """The end of the seeded history: midnight UTC of `today` (so a day's runs agree)."""
    day = today or datetime.now(UTC).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _to_us(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def _timestamps(us: np.ndarray) -> list[str]:
    """UTC microseconds → 'YYYY-MM-DD HH:MM:SS.ffffff' (Django's SQLite storage format;
    PostgreSQL parses it in the UTC session Django opens)."""
    text = np.datetime_as_string(us.astype("datetime64[us]"), unit="us")
    chars = text.astype("U26").view(np.uint32).reshape(-1, 26)
    chars[:, 10] = ord(" ")
    return chars.view("U26").ravel().tolist()


# -------------------------------------------------------------------------------- writers


def _field_constant(f: models.Field, vendor: str) -> Any:
    """The value for a column the generator does not fill: the field's default, else NULL."""
    if f.has_default():
        value = f.get_default()
        if isinstance(f, models.JSONField):
            return json.dumps(value)
        if isinstance(value, bool) and vendor == "sqlite":
            return int(value)
        if isinstance(value, datetime):
            return _timestamps(np.array([_to_us(value)]))[0]
        return value
    if f.null:
        return None
    if f.blank and isinstance(f, models.CharField | models.TextField):
        return ""
    if getattr(f, "db_default", models.NOT_PROVIDED) is not models.NOT_PROVIDED:
        return models.NOT_PROVIDED
    raise RuntimeError(f"seed: no value for required column {f.model.__name__}.{f.name}")


class BulkWriter:
    """Writes generated rows with the fastest path of the database in use.

    Columns of the model that the caller does not supply get their field default (or NULL),
    so other apps may add defaulted columns without breaking the generator.
    """

    def __init__(self, rows_per_transaction: int = ROWS_PER_TRANSACTION) -> None:
        self.vendor = connection.vendor
        self.rows_per_transaction = rows_per_transaction

    def _columns(self, model: type[models.Model], given: list[str]) -> tuple[list[str], tuple]:
        extra_cols, extra_vals = [], []
        for f in model._meta.concrete_fields:
            if f.column in given or f.primary_key:
                continue
            value = _field_constant(f, self.vendor)
            if value is models.NOT_PROVIDED:
                continue
            extra_cols.append(f.column)
            extra_vals.append(value)
        return given + extra_cols, tuple(extra_vals)

    def write(self, model: type[models.Model], columns: list[str],
              rows: Iterable[tuple]) -> int:
        cols, extra = self._columns(model, list(columns))
        if extra:
            rows = (row + extra for row in rows)
        table = model._meta.db_table
        qn = connection.ops.quote_name
        col_sql = ", ".join(qn(c) for c in cols)
        total = 0
        it = iter(rows)
        while True:
            batch = list(islice(it, self.rows_per_transaction))
            if not batch:
                return total
            with transaction.atomic():
                if self.vendor == "postgresql":
                    with connection.cursor() as cursor, \
                            cursor.copy(f"COPY {qn(table)} ({col_sql}) FROM STDIN") as copy:
                        for row in batch:
                            copy.write_row(row)
                else:
                    connection.ensure_connection()
                    marks = ", ".join("?" * len(cols))
                    # The raw driver connection: Django's cursor wrapper would re-format
                    # the SQL and wrap every row; a raw executemany is ~2x faster.
                    connection.connection.executemany(
                        f"INSERT INTO {qn(table)} ({col_sql}) VALUES ({marks})", batch)  # noqa: S608
            total += len(batch)

    def secondary_indexes(self, model: type[models.Model]) -> list[tuple[str, str]]:
        """(name, CREATE statement) of the table's plain indexes (not keys or constraints)."""
        table = model._meta.db_table
        with connection.cursor() as cursor:
            if self.vendor == "sqlite":
                cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                               "AND tbl_name = %s AND sql IS NOT NULL "
                               "AND sql NOT LIKE 'CREATE UNIQUE%%'", [table])
            elif self.vendor == "postgresql":
                cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
                               "AND indexdef NOT LIKE 'CREATE UNIQUE%%' AND indexname NOT IN "
                               "(SELECT conname FROM pg_constraint)", [table])
            else:
                return []
            return list(cursor.fetchall())

    def drop_indexes(self, indexes: list[tuple[str, str]]) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            for name, _sql in indexes:
                cursor.execute(f"DROP INDEX IF EXISTS {connection.ops.quote_name(name)}")

    def create_indexes(self, indexes: list[tuple[str, str]]) -> None:
        with connection.cursor() as cursor:
            for _name, sql in indexes:
                with transaction.atomic():
                    sql = sql.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
                    cursor.execute(sql.replace("%", "%%"))

    def reset_sequences(self, models_: list[type[models.Model]]) -> None:
        """After inserting explicit ids, move PostgreSQL's sequences past them."""
        if self.vendor != "postgresql":
            return  # SQLite's AUTOINCREMENT follows the largest id by itself
        from django.core.management.color import no_style

        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), models_):
                cursor.execute(sql)


# ------------------------------------------------------------------------------- generator


class Generator:
    """Generates the population chunk by chunk; every chunk has its own random stream."""

    def __init__(self, *, contacts: int, seed: int, events_per_contact: float,
                 anchor: datetime, owner_ids: list[int | None], tag_ids: list[int],
                 contact_base_id: int, company_base_id: int) -> None:
        self.n = contacts
        self.seed = seed
        self.epc = max(1.0, float(events_per_contact))
        self.anchor_us = _to_us(anchor)
        self.start_us = self.anchor_us - 3 * YEAR_US
        self.owner_ids = owner_ids
        self.tag_ids = tag_ids
        self.contact_base_id = contact_base_id
        self.company_base_id = company_base_id
        self.n_companies = max(1, contacts // 20)
        self.seen_locals: dict[str, int] = {}
        self._country_probs = _probs([c[1] for c in COUNTRIES])
        self._culture_of_country = np.array([CULTURES.index(c[2]) for c in COUNTRIES])

    def rng(self, *stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *stream])

    # companies ----------------------------------------------------------------------------
    def companies(self) -> Iterator[tuple]:
        """Rows for Company (explicit ids); also remembers each company's country/domain."""
        m = self.n_companies
        rng = self.rng(1)
        n_words, n_kinds = len(COMPANY_WORDS), len(COMPANY_KINDS)
        combos = rng.permutation(n_words * n_kinds)
        country = rng.choice(len(COUNTRIES), size=m, p=self._country_probs)
        place = rng.integers(0, 1 << 30, size=m)
        emp = rng.choice(len(EMPLOYEE_BANDS), size=m, p=_probs(EMPLOYEE_WEIGHTS))
        rev = np.clip(emp + rng.integers(-1, 2, size=m), 0, len(REVENUE_BANDS) - 1)
        created = self.start_us - rng.integers(0, 2 * YEAR_US, size=m)
        owners = rng.choice(len(self.owner_ids), size=m, p=_probs(OWNER_WEIGHTS))
        has_phone = rng.random(m) < 0.6
        created_s = _timestamps(created)
        self.company_country = country
        self.company_domain: list[str] = []
        self.company_ids = np.arange(m) + self.company_base_id
        for i in range(m):
            combo = int(combos[i % len(combos)])
            repeat = i // len(combos)
            word, (kind, industry) = COMPANY_WORDS[combo // n_kinds], COMPANY_KINDS[combo % n_kinds]
            code, _, _, places = COUNTRIES[country[i]]
            region, city, _ = places[place[i] % len(places)]
            name = f"{word} {kind}" + (f" {city}" if repeat else "")
            domain = f"{_slug(word)}{_slug(kind)}{repeat + 1 if repeat else ''}.example"
            self.company_domain.append(domain)
            phone = phone_number(code, i * 7919 + 13) if has_phone[i] else ""
            yield (int(self.company_ids[i]), name, domain, industry, EMPLOYEE_BANDS[emp[i]],
                   REVENUE_BANDS[rev[i]], code, region, city, phone,
                   self.owner_ids[owners[i]], created_s[i], created_s[i])

    COMPANY_COLUMNS = ["id", "name", "domain", "industry", "employee_band", "revenue_band",
                       "country", "region", "city", "phone", "owner_id", "created_at",
                       "updated_at"]

    # contacts -----------------------------------------------------------------------------
    def chunk(self, k: int) -> dict[str, Any]:
        """Contacts [k*CHUNK, min(N, (k+1)*CHUNK)) with their events, consents and tags."""
        lo = k * CHUNK_CONTACTS
        n = min(self.n, lo + CHUNK_CONTACTS) - lo
        rng = self.rng(2, k)
        ids = np.arange(lo, lo + n) + self.contact_base_id

        # who and where
        has_company = rng.random(n) < 0.4
        # A few large companies hold many contacts (Zipf-like), most hold a few.
        comp = (self.n_companies * rng.random(n) ** 2.2).astype(np.int64)
        comp = np.minimum(comp, self.n_companies - 1)
        country = rng.choice(len(COUNTRIES), size=n, p=self._country_probs)
        same_country = has_company & (rng.random(n) < 0.8)
        country = np.where(same_country, self.company_country[comp], country)
        culture = self._culture_of_country[country]
        migrant = rng.random(n) < 0.15
        culture = np.where(migrant, rng.integers(0, len(CULTURES), size=n), culture)
        first_i = rng.integers(0, 1 << 30, size=n)
        last_i = rng.integers(0, 1 << 30, size=n)
        place_i = rng.integers(0, 1 << 30, size=n)
        # Near-duplicates for the duplicates review: same name (and company) as the contact
        # before, a different address.
        dup = rng.random(n) < 0.003
        dup[0] = False
        src = np.flatnonzero(dup) - 1
        first_i[dup], last_i[dup] = first_i[src], last_i[src]
        culture[dup], comp[dup], has_company[dup] = culture[src], comp[src], has_company[src]
        country[dup] = country[src]
        has_email = rng.random(n) < 0.92
        has_phone = rng.random(n) < 0.45
        job_i = rng.integers(0, len(JOB_TITLES), size=n)
        owner = rng.choice(len(self.owner_ids), size=n, p=_probs(OWNER_WEIGHTS))
        age_known = rng.random(n) < 0.75
        age_band = rng.choice(len(AGE_BANDS), size=n, p=_probs(AGE_WEIGHTS))
        age_lo = np.array([r[0] for r in AGE_RANGES])[age_band]
        age_hi = np.array([r[1] for r in AGE_RANGES])[age_band]
        age_years = age_lo + (rng.random(n) * (age_hi - age_lo + 1)).astype(np.int64)
        dob_known = age_known & (rng.random(n) < 0.35)
        dob_day_in_year = rng.integers(1, 364, size=n)
        income_known = rng.random(n) < 0.6
        income = rng.choice(len(INCOME_BANDS), size=n, p=_probs(INCOME_WEIGHTS))
        source = rng.choice(len(SOURCES), size=n, p=_probs(SOURCE_WEIGHTS))
        src_pick = rng.integers(0, 1 << 30, size=(n, 3))
        n_tags = np.minimum(rng.poisson(1.4, size=n), 5)

        # when: more recent sign-ups are more frequent (a growing business)
        created = self.start_us + (rng.random(n) ** 0.8 * (3 * YEAR_US - DAY_US)).astype(np.int64)

        # buying behaviour
        buyer = rng.choice(4, size=n, p=_probs(BUYER_WEIGHTS))
        year_ago = self.anchor_us - YEAR_US
        buyer = np.where((buyer == LAPSED) & (created > year_ago - 60 * DAY_US), ONCE, buyer)
        n_orders = np.select(
            [buyer == ONCE, buyer == LOYAL, buyer == LAPSED],
            [np.ones(n, np.int64), 2 + rng.poisson(3.5, size=n), 2 + rng.poisson(1.5, size=n)],
            0)
        # Lapsed buyers stop between 13 and ~30 months ago; their activity fades after.
        lapse_end = created + ((year_ago - 30 * DAY_US - created)
                               * (0.4 + 0.6 * rng.random(n))).astype(np.int64)
        order_end = np.where(buyer == LAPSED, lapse_end, self.anchor_us)
        quiet = (buyer == NEVER) & (rng.random(n) < 0.3)
        active_end = np.where(buyer == LAPSED, np.minimum(lapse_end + 90 * DAY_US,
                                                          self.anchor_us), self.anchor_us)
        active_end = np.where(quiet, created + ((self.anchor_us - created)
                                                * rng.random(n)).astype(np.int64), active_end)
        spend = np.exp(rng.normal(3.9, 0.6, size=n))  # a customer's typical basket (USD)

        ev: list[tuple[np.ndarray, ...]] = []  # (contact idx, kind, time, aux1, aux2)

        def add(idx: np.ndarray, kind: int, t: np.ndarray, a1: np.ndarray | int = 0,
                a2: np.ndarray | int = 0) -> None:
            m = len(idx)
            ev.append((idx, np.full(m, kind, np.int8), t,
                       np.broadcast_to(np.asarray(a1, np.int64), (m,)),
                       np.broadcast_to(np.asarray(a2, np.int64), (m,))))

        allc = np.arange(n)
        add(allc, K_CREATED, created)
        # a sign-up form at creation for web and campaign contacts
        signs = allc[np.isin(source, [0, 1]) & (rng.random(n) < 0.7)]
        add(signs, K_FORM, created[signs] + rng.integers(1, 120, size=len(signs)) * 1_000_000,
            rng.choice(len(FORMS), size=len(signs), p=_probs(FORM_WEIGHTS)))

        # orders
        o_idx = np.repeat(allc, n_orders)
        span = np.maximum(order_end - created, HOUR_US)[o_idx]
        o_t = created[o_idx] + HOUR_US + (rng.random(len(o_idx)) * span).astype(np.int64)
        o_t = np.minimum(o_t, np.maximum(order_end[o_idx], created[o_idx] + HOUR_US))
        o_t = np.minimum(o_t, self.anchor_us - 1)
        order = np.lexsort((o_t, o_idx))
        o_idx, o_t = o_idx[order], o_t[order]
        starts = np.concatenate([[0], np.cumsum(n_orders)[:-1]])
        o_seq = np.arange(len(o_idx)) - np.repeat(starts, n_orders) + 1
        cents = np.maximum(500, np.round(spend[o_idx] * np.exp(rng.normal(0, 0.3, len(o_idx)))
                                         * 100)).astype(np.int64)
        add(o_idx, K_ORDER, o_t, o_seq, cents)
        first_order = np.full(n, -1, np.int64)
        first_order[o_idx[::-1]] = o_t[::-1]

        # support tickets (buyers more often), each opened and usually closed within days
        n_tickets = rng.poisson(np.where(buyer == NEVER, 0.12, 0.45))
        t_idx = np.repeat(allc, n_tickets)
        t_open = created[t_idx] + (rng.random(len(t_idx))
                                   * (active_end - created)[t_idx]).astype(np.int64)
        t_seq = np.arange(len(t_idx)) - np.repeat(np.concatenate([[0], np.cumsum(n_tickets)[:-1]]),
                                                  n_tickets) + 1
        t_info = rng.integers(0, 1 << 20, size=len(t_idx))
        add(t_idx, K_TOPEN, t_open, t_seq, t_info)
        t_close = t_open + (np.exp(rng.normal(3.0, 1.0, len(t_idx))) * HOUR_US).astype(np.int64)
        closed = (t_close < self.anchor_us) & (rng.random(len(t_idx)) < 0.95)
        add(t_idx[closed], K_TCLOSE, t_close[closed], t_seq[closed], t_info[closed])

        # NPS answers: loyal buyers promote, lapsed ones are less happy
        answers = rng.random(n) < np.where(buyer == NEVER, 0.05, 0.3)
        s_idx = allc[answers]
        base = np.array([5.5, 7.5, 9.0, 5.0])[buyer[s_idx]]
        score = np.clip(np.round(rng.normal(base, 2.0)), 0, 10).astype(np.int64)
        s_from = np.where(first_order[s_idx] >= 0, first_order[s_idx], created[s_idx])
        s_t = s_from + (rng.random(len(s_idx)) * (active_end[s_idx] - s_from)).astype(np.int64)
        add(s_idx, K_NPS, s_t, score)

        # everything else: page views, email opens, forms, up to the contact's total
        structured = np.bincount(np.concatenate([e[0] for e in ev]), minlength=n)
        mean_total = self.epc
        k_disp = 1.5  # negative binomial: many quiet contacts, a few very active ones
        total = 1 + rng.negative_binomial(k_disp, k_disp / (k_disp + mean_total - 1), size=n)
        n_act = np.maximum(0, total - structured)
        a_idx = np.repeat(allc, n_act)
        a_t = created[a_idx] + (rng.random(len(a_idx))
                                * np.maximum(active_end - created, HOUR_US)[a_idx]).astype(np.int64)
        a_t = np.minimum(a_t, self.anchor_us - 1)
        a_kind = rng.choice([K_PAGE, K_EMAIL, K_FORM], size=len(a_idx), p=[0.62, 0.33, 0.05])
        a_aux = np.where(a_kind == K_PAGE,
                         rng.choice(len(PAGES), size=len(a_idx), p=_probs(PAGE_WEIGHTS)),
                         rng.integers(0, 1 << 20, size=len(a_idx)))
        a_form = rng.choice(len(FORMS), size=len(a_idx), p=_probs(FORM_WEIGHTS))
        a_aux = np.where(a_kind == K_FORM, a_form, a_aux)
        for kind in (K_PAGE, K_EMAIL, K_FORM):
            sel = a_kind == kind
            add(a_idx[sel], kind, a_t[sel], a_aux[sel])

        e_idx = np.concatenate([e[0] for e in ev])
        e_kind = np.concatenate([e[1] for e in ev])
        e_t = np.concatenate([e[2] for e in ev])
        e_a1 = np.concatenate([e[3] for e in ev])
        e_a2 = np.concatenate([e[4] for e in ev])
        order = np.lexsort((e_kind, e_t, e_idx))  # per contact, in time order
        e_idx, e_kind, e_t, e_a1, e_a2 = (a[order] for a in (e_idx, e_kind, e_t, e_a1, e_a2))
        last_activity = np.full(n, 0, np.int64)
        np.maximum.at(last_activity, e_idx, e_t)
        lag = rng.integers(1, 300, size=len(e_t)) * 1_000_000

        return {
            "lo": lo, "n": n, "ids": ids, "culture": culture, "first_i": first_i,
            "last_i": last_i, "place_i": place_i, "country": country, "has_company": has_company,
            "comp": comp, "has_email": has_email, "has_phone": has_phone, "job_i": job_i,
            "owner": owner, "age_known": age_known, "age_band": age_band,
            "age_years": age_years, "dob_known": dob_known, "dob_day_in_year": dob_day_in_year,
            "income_known": income_known, "income": income, "source": source,
            "src_pick": src_pick, "n_tags": n_tags, "created": created,
            "last_activity": last_activity, "rng": rng,
            "events": (e_idx, e_kind, e_t, e_a1, e_a2, np.minimum(e_t + lag, max(
                self.anchor_us, _to_us(datetime.now(UTC))))),
        }

    CONTACT_COLUMNS = ["id", "first_name", "last_name", "email", "phone", "job_title",
                       "company_id", "owner_id", "country", "region", "city", "timezone",
                       "date_of_birth", "age_band", "income_band", "source", "source_detail",
                       "search_text", "created_at", "updated_at", "last_activity_at"]

    def contact_rows(self, c: dict[str, Any]) -> tuple[list[tuple], list[str], list[str]]:
        """Contact rows of a chunk, and each contact's email and source (for events)."""
        n = c["n"]
        created_s = _timestamps(c["created"])
        last_s = _timestamps(c["last_activity"])
        anchor_day = datetime.fromtimestamp(self.anchor_us / 1e6, UTC).date()
        from clm.customers.validation import age_band_for

        rows, emails, sources = [], [], []
        for i in range(n):
            cid = int(c["ids"][i])
            firsts, lasts = NAMES[CULTURES[c["culture"][i]]]
            first = firsts[c["first_i"][i] % len(firsts)]
            last = lasts[c["last_i"][i] % len(lasts)]
            code, _, _, places = COUNTRIES[c["country"][i]]
            region, city, tz = places[c["place_i"][i] % len(places)]
            company_id = None
            email = None
            if c["has_company"][i]:
                company_id = int(self.company_ids[c["comp"][i]])
                domain = self.company_domain[c["comp"][i]]
            else:
                domain = FREEMAIL[c["place_i"][i] % len(FREEMAIL)]
            if c["has_email"][i]:
                local = f"{_ascii(first)}.{_ascii(last)}"
                seen = self.seen_locals.get(f"{local}@{domain}", 0) + 1
                self.seen_locals[f"{local}@{domain}"] = seen
                email = f"{local}{seen if seen > 1 else ''}@{domain}"
            phone = phone_number(code, cid * 7919 + 7) if c["has_phone"][i] else ""
            dob = None
            age_band = AGE_BANDS[c["age_band"][i]] if c["age_known"][i] else ""
            if c["dob_known"][i]:
                born = date(anchor_day.year - int(c["age_years"][i]) - 1, 1, 1) + timedelta(
                    days=int(c["dob_day_in_year"][i]))
                dob = born.isoformat()
                age_band = age_band_for(born, anchor_day)
            source = SOURCES[c["source"][i]]
            detail = self._source_detail(source, c["src_pick"][i])
            owner_id = self.owner_ids[c["owner"][i]]
            search = " ".join(p for p in (first, last, email or "") if p).lower()[:500]
            rows.append((cid, first, last, email, phone,
                         JOB_TITLES[c["job_i"][i]] if company_id else "", company_id, owner_id,
                         code, region, city, tz, dob, age_band,
                         INCOME_BANDS[c["income"][i]] if c["income_known"][i] else "",
                         source, detail, search, created_s[i], last_s[i], last_s[i]))
            emails.append(email)
            sources.append(source)
        return rows, emails, sources

    @staticmethod
    def _source_detail(source: str, pick: np.ndarray) -> str:
        a, b, c = (int(x) for x in pick)
        if source == "campaign":
            utm_source, utm_medium = UTM[a % len(UTM)]
            year = 2023 + b % 3
            return json.dumps({"utm_source": utm_source, "utm_medium": utm_medium,
                               "utm_campaign": f"{CAMPAIGNS[c % len(CAMPAIGNS)]}-{year}"})
        if source == "referral":
            return json.dumps({"referral_code": f"REF-{a % 100000:05d}",
                               "referrer": REFERRERS[b % len(REFERRERS)] or "friend"})
        if source == "web":
            return json.dumps({"referrer": REFERRERS[a % len(REFERRERS)],
                               "landing_page": PAGES[b % 6]})
        if source == "import":
            return json.dumps({"file": IMPORT_FILES[a % len(IMPORT_FILES)]})
        return json.dumps({"integration": ["shop", "mobile-app", "zapier"][a % 3]})

    EVENT_COLUMNS = ["contact_id", "kind", "occurred_at", "recorded_at", "source", "properties"]

    def event_rows(self, c: dict[str, Any], emails: list[str], sources: list[str]
                   ) -> Iterator[tuple]:
        e_idx, e_kind, e_t, e_a1, e_a2, e_rec = c["events"]
        occurred = _timestamps(e_t)
        recorded = _timestamps(e_rec)
        ids = c["ids"]
        dumps = json.dumps
        for j, (i, kind, a1, a2) in enumerate(zip(e_idx.tolist(), e_kind.tolist(),
                                                  e_a1.tolist(), e_a2.tolist(), strict=True)):
            cid = int(ids[i])
            if kind == K_PAGE:
                props = f'{{"url": "{PAGES[a1]}"}}'
                source = "web"
            elif kind == K_EMAIL:
                props = f'{{"campaign": "{EMAIL_CAMPAIGNS[a1 % len(EMAIL_CAMPAIGNS)]}"}}'
                source = "email"
            elif kind == K_ORDER:
                props = (f'{{"order_id": "ORD-{cid}-{a1}", "amount": "{a2 // 100}.{a2 % 100:02d}", '
                         f'"currency": "USD", "product": "{PRODUCTS[(cid + a1) % len(PRODUCTS)]}", '
                         f'"items": {1 + (cid * a1) % 3}}}')
                source = "shop"
            elif kind == K_FORM:
                form_type, form = FORMS[a1 % len(FORMS)]
                props = f'{{"form_type": "{form_type}", "form": "{form}"}}'
                source = "web"
            elif kind == K_CREATED:
                props = dumps({"source": sources[i], "email": emails[i]})
                source = sources[i]
            elif kind == K_TOPEN:
                props = (f'{{"ticket_id": "T-{cid}-{a1}", "subject": '
                         f'"{TICKET_SUBJECTS[a2 % len(TICKET_SUBJECTS)]}", '
                         f'"priority": "{TICKET_PRIORITIES[(a2 >> 4) % 4]}"}}')
                source = "helpdesk"
            elif kind == K_TCLOSE:
                props = f'{{"ticket_id": "T-{cid}-{a1}", "resolution": "solved"}}'
                source = "helpdesk"
            else:  # nps
                props = f'{{"score": {a1}, "survey": "nps"}}'
                source = "survey"
            yield (cid, KINDS[kind], occurred[j], recorded[j], source, props)

    def consent_rows(self, c: dict[str, Any], emails: list[str]) -> list[tuple]:
        """Marketing opt-ins at sign-up for most contacts with email; some withdraw later."""
        rng = c["rng"]
        n = c["n"]
        rows = []
        grant = rng.random((n, len(CONSENT_PURPOSES))) < np.array([0.65, 0.4])
        withdraw = rng.random((n, len(CONSENT_PURPOSES))) < 0.12
        when = rng.random((n, len(CONSENT_PURPOSES)))
        created = c["created"]
        span = np.maximum(self.anchor_us - created, HOUR_US)
        granted_at = _timestamps(np.repeat(created, len(CONSENT_PURPOSES)) + 60_000_000)
        withdrawn_us = (created[:, None] + (when * span[:, None]).astype(np.int64)).ravel()
        withdrawn_at = _timestamps(withdrawn_us)
        for i in range(n):
            if emails[i] is None:
                continue
            cid = int(c["ids"][i])
            policy = POLICY_VERSIONS[min(2, int((created[i] - self.start_us) // YEAR_US))]
            for p, purpose in enumerate(CONSENT_PURPOSES):
                if not grant[i, p]:
                    continue
                j = i * len(CONSENT_PURPOSES) + p
                rows.append((cid, purpose, True, granted_at[j], "signup-form", policy,
                             granted_at[j]))
                if withdraw[i, p]:
                    rows.append((cid, purpose, False, withdrawn_at[j], "preference-center",
                                 policy, withdrawn_at[j]))
        return rows

    CONSENT_COLUMNS = ["contact_id", "purpose", "granted", "occurred_at", "source",
                       "policy_version", "created_at"]

    def tag_rows(self, c: dict[str, Any]) -> list[tuple]:
        rng = c["rng"]
        rows = []
        for i in range(c["n"]):
            k = int(c["n_tags"][i])
            if k:
                picks = rng.choice(len(self.tag_ids), size=k, replace=False)
                cid = int(c["ids"][i])
                rows.extend((cid, self.tag_ids[t]) for t in sorted(picks.tolist()))
        return rows


# --------------------------------------------------------------------------------- the run


def demo_users(password: str | None = None) -> list[Any]:
    """The demo staff users (created if missing), in DEMO_USERS order.

    They get an unusable password unless `password` (CLM_DEMO_PASSWORD) is given.
    """
    from django.contrib.auth import get_user_model

    from clm.accounts.services import roles_sync, user_set_role

    roles_sync()
    User = get_user_model()
    users = []
    for username, role, team, first, last in DEMO_USERS:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(username=username, first_name=first, last_name=last,
                        email=f"{username}@staff.example", is_staff=False)
            if password:
                user.set_password(password)
            else:
                user.set_unusable_password()
            user.save()
            user_set_role(user=user, role=role, team=team)
        users.append(user)
    return users


def seed_population(*, contacts: int, seed: int = 42, events_per_contact: float = 10,
                    anchor: datetime | None = None,
                    progress: Callable[[str], None] | None = None) -> SeedReport:
    """Fill an empty contact table with the demo population (see the module docstring).

    Precondition: no contacts exist (the caller checks; ids and emails are derived from the
    contact's position in the population).
    """
    import time

    from clm.customers.models import Company, ConsentRecord, Contact, Tag

    say = progress or (lambda _msg: None)
    started = time.monotonic()
    report = SeedReport()
    anchor = anchor or anchor_for()
    users = demo_users(os.environ.get("CLM_DEMO_PASSWORD") or None)
    owner_ids: list[int | None] = [u.pk for u in users] + [None]
    for name in INTERESTS:
        Tag.objects.get_or_create(name=name)
    tag_ids = list(Tag.objects.filter(name__in=INTERESTS).order_by("name")
                   .values_list("pk", flat=True))
    contact_base = (Contact.objects.aggregate(m=models.Max("pk"))["m"] or 0) + 1
    company_base = (Company.objects.aggregate(m=models.Max("pk"))["m"] or 0) + 1
    gen = Generator(contacts=contacts, seed=seed, events_per_contact=events_per_contact,
                    anchor=anchor, owner_ids=owner_ids, tag_ids=tag_ids,
                    contact_base_id=contact_base, company_base_id=company_base)
    writer = BulkWriter()
    from clm.timeline.models import Event


    report.companies = writer.write(Company, Generator.COMPANY_COLUMNS, gen.companies())
    say(f"companies: {report.companies:,}")
    kinds = np.zeros(len(KINDS), np.int64)
    through = Contact.tags.through
    chunks = (contacts + CHUNK_CONTACTS - 1) // CHUNK_CONTACTS
    # Large loads: build the secondary indexes once at the end (a sort) instead of updating
    # them row by row (random B-tree writes that outgrow the cache at millions of rows).
    deferred: list[tuple[str, str]] = []
    if contacts >= DEFER_INDEXES_FROM:
        deferred = writer.secondary_indexes(Event) + writer.secondary_indexes(Contact)
        writer.drop_indexes(deferred)
    try:
        for k in range(chunks):
            c = gen.chunk(k)
            rows, emails, sources = gen.contact_rows(c)
            report.contacts += writer.write(Contact, Generator.CONTACT_COLUMNS, rows)
            report.tag_links += writer.write(through, ["contact_id", "tag_id"], gen.tag_rows(c))
            report.consents += writer.write(ConsentRecord, Generator.CONSENT_COLUMNS,
                                            gen.consent_rows(c, emails))
            report.events += writer.write(Event, Generator.EVENT_COLUMNS,
                                          gen.event_rows(c, emails, sources))
            kinds += np.bincount(c["events"][1], minlength=len(KINDS))
            if k == chunks - 1 or (k + 1) % max(1, chunks // 20) == 0:
                elapsed = time.monotonic() - started
                say(f"contacts {report.contacts:,}/{contacts:,}  events {report.events:,}  "
                    f"({elapsed:,.0f} s, {report.events / max(elapsed, 1e-9):,.0f} events/s)")
    finally:
        if deferred:
            say(f"building {len(deferred)} indexes…")
            writer.create_indexes(deferred)
    # Fresh statistics, so the planners pick the right index on the big tables.
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA analysis_limit = 1000")
        cursor.execute("ANALYZE")
    writer.reset_sequences([Company, Contact])
    report.counts_by_kind = {KINDS[i]: int(kinds[i]) for i in range(len(KINDS))}
    report.seconds = time.monotonic() - started
    return report

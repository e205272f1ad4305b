"""The simulator's fixed vocabulary: enum values, reject reasons, devices, names and text.

Everything the payloads say that is not a number lives here, so that generated
data stays deterministic (text is derived from small integer keys at render
time instead of being stored per row) and every enum value of the contract is
spelled once.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

PRODUCT_TYPES = (
    "website",
    "mobile_app_ios",
    "mobile_app_android",
    "mobile_app_windows",
    "streaming_app",
    "gaming",
)
TEST_STATUSES = (
    "initialized",
    "customer_finalized",
    "waiting",
    "running",
    "locked",
    "archived",
    "cancelled",
)
REVIEW_STATUSES = ("not_finalized", "review_initialized", "review_successful", "review_failed")
# None is a test-case run; "custom" is the old name of a focused variant.
TESTING_TYPES: tuple[str | None, ...] = (
    "coverage",
    "focused",
    "rapid",
    "usability",
    "custom",
    "external",
    None,
)
TESTING_TYPE_WEIGHTS = (50, 15, 10, 8, 4, 5, 8)
SEVERITIES = ("low", "high", "critical", "visual", "content", "custom")
SEVERITY_WEIGHTS = (35, 30, 8, 12, 10, 5)
BUG_STATUS_BUCKETS = ("forwarded", "accepted", "auto_accepted", "rejected")
REPORT_LANGUAGES = ("en", "de")
BUG_TYPES = ("default", "content", "visual")

# The seven default reasons: (key, name, default comment).
REJECT_REASONS: tuple[tuple[str, str, str], ...] = (
    (
        "device_not_relevant",
        "Device not relevant",
        "Thanks for the report. The device used is not relevant for this test.",
    ),
    (
        "ignored_instructions",
        "Ignored instructions",
        "The test instructions were not followed, so this report cannot be accepted.",
    ),
    (
        "intended_behavior",
        "Intended behavior",
        "What you describe is the intended behavior of the product.",
    ),
    ("irrelevant", "Irrelevant", "This issue is not relevant for the scope of this test."),
    ("known_bug", "Known bug", "This is a known bug that we are already working on."),
    (
        "not_reproducible",
        "Not reproducible",
        "We could not reproduce this issue with the given steps.",
    ),
    (
        "request_timeout",
        "Request timeout",
        "Your answer to our information request did not arrive in time.",
    ),
)
REJECT_KEYS = tuple(key for key, _, _ in REJECT_REASONS)
REJECT_COMMENTS = {key: comment for key, _, comment in REJECT_REASONS}

# Offsets used when rendering instants: the same instant shows up with several
# offsets so that a client comparing timestamps as text gets the order wrong.
OFFSETS = tuple(
    timezone(timedelta(minutes=minutes)) for minutes in (120, -300, 0, 330, 540, -180, 60, -480)
)

DEVICES: tuple[dict[str, Any], ...] = tuple(
    {
        "id": 9100 + index,
        "category": {"name": category},
        "vendor": {"name": vendor},
        "devices": {"name": model},
        "operating_system": {"id": 700 + index, "name": os_name},
        "browsers": [{"name": browser} for browser in browsers],
    }
    for index, (category, vendor, model, os_name, browsers) in enumerate(
        (
            ("Computers", "Apple", "MacBook Pro 14", "macOS 14", ("Safari", "Chrome")),
            ("Computers", "Dell", "XPS 13", "Windows 11", ("Edge", "Chrome")),
            ("Computers", "Lenovo", "ThinkPad T14", "Ubuntu 22.04", ("Firefox",)),
            ("Smartphones", "Apple", "iPhone 15", "iOS 17", ("Safari",)),
            ("Smartphones", "Samsung", "Galaxy S23", "Android 14", ("Chrome",)),
            ("Smartphones", "Google", "Pixel 8", "Android 14", ("Chrome", "Firefox")),
            ("Smartphones", "Xiaomi", "Redmi Note 12", "Android 13", ("Chrome",)),
            ("Tablets", "Apple", "iPad Air", "iPadOS 17", ("Safari",)),
            ("Tablets", "Samsung", "Galaxy Tab S9", "Android 14", ("Chrome",)),
            ("Tablets", "Amazon", "Fire HD 10", "Fire OS 8", ("Silk",)),
        )
    )
)

REQUIREMENTS: tuple[dict[str, Any], ...] = tuple(
    {
        "id": 8100 + index,
        "category": {"id": 1 + index % 3, "key": category.lower(), "name": category},
        "operating_system": {"id": 40 + index, "key": os_key, "name": os_name},
        "min_operating_system_version": {"id": 400 + index, "name": min_version},
        "max_operating_system_version": None,
        "browsers": [
            {"id": 60 + b_index, "name": browser, "key": browser.lower()}
            for b_index, browser in enumerate(browsers)
        ],
        "devices": [],
        "input_devices": [],
        "vendor": None,
        "browser_based": bool(browsers),
        "gaming": False,
    }
    for index, (category, os_key, os_name, min_version, browsers) in enumerate(
        (
            ("Computers", "windows", "Windows", "10", ("Chrome", "Edge", "Firefox")),
            ("Smartphones", "ios", "iOS", "16", ("Safari",)),
            ("Tablets", "android", "Android", "12", ("Chrome",)),
            ("Computers", "macos", "macOS", "13", ("Safari", "Chrome")),
            ("Smartphones", "android", "Android", "13", ()),
            ("Tablets", "ipados", "iPadOS", "16", ()),
        )
    )
)

_FIRST_NAMES = (
    "Anna", "Ben", "Carla", "David", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas",
    "Kira", "Luca", "Mira", "Nils", "Olga", "Paul", "Quinn", "Rosa", "Sven", "Tara",
    "Umut", "Vera", "Wim", "Xenia", "Yusuf", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Keller", "Novak", "Silva", "Okafor", "Berg", "Haas", "Ivanova", "Jensen", "Lopez",
    "Meyer", "Nakamura", "Osei", "Petrov", "Quispe", "Rossi", "Schulz", "Tanaka", "Ueda",
    "Varga", "Weber",
)  # fmt: skip


def names_for_testers(count: int) -> list[str]:
    """Tester display names (``Anna Ke.``), unique, in a fixed order."""
    return [f"{first} {last[:2]}.{_suffix(index)}" for index, (first, last) in _pairs(count)]


def names_for_customers(count: int) -> list[str]:
    """Customer user names (``Anna Keller``); never equal to a tester name."""
    return [f"{first} {last}{_suffix(index)}" for index, (first, last) in _pairs(count, 7)]


def _pairs(count: int, shift: int = 0) -> list[tuple[int, tuple[str, str]]]:
    # (index mod 26, 7 * index mod 20) repeats only every 260 names; _suffix numbers the cycles.
    pairs = []
    for index in range(count):
        first = _FIRST_NAMES[(index + shift) % len(_FIRST_NAMES)]
        last = _LAST_NAMES[(index * 7 + shift) % len(_LAST_NAMES)]
        pairs.append((index, (first, last)))
    return pairs


def _suffix(index: int) -> str:
    cycle = index // (len(_FIRST_NAMES) * len(_LAST_NAMES) // 2)  # lcm(26, 20) = 260
    return f" {cycle + 1}" if cycle else ""


_PRODUCT_NAMES = (
    "Web Shop", "Banking App", "Travel Portal", "Media Player", "Fitness Tracker",
    "Food Delivery", "Insurance Portal", "Learning Hub", "Smart Home", "Arcade League",
)  # fmt: skip
_AREAS = (
    "Checkout", "Login", "Search", "Profile", "Payments", "Onboarding", "Settings",
    "Notifications", "Cart", "Wishlist", "Reviews", "Help Center", "Dashboard", "Messaging",
    "Booking", "Video Playback", "Subscriptions", "Maps", "Sharing", "Accessibility",
)  # fmt: skip
_SECTION_NAMES = ("Web", "iOS", "Android", "Smart TV", "Admin", "Partner Portal")
_TEST_KINDS = (
    "Release check", "Regression run", "Exploratory sweep", "Smoke test", "Usability study",
    "Feature launch", "Hotfix verification", "Localisation pass",
)  # fmt: skip
_BUG_OBJECTS = (
    "button", "form", "page", "image", "menu", "price label", "error message", "link",
    "video", "modal dialog", "date picker", "search field",
)  # fmt: skip
_BUG_PROBLEMS = (
    "does not respond", "is cut off", "shows a wrong value", "overlaps other content",
    "crashes the app", "loads forever", "has a typo", "is misaligned", "returns a 500 error",
    "ignores input",
)  # fmt: skip


def product_name(index: int) -> str:
    """A product name; repeats get a number so names stay unique."""
    base = _PRODUCT_NAMES[index % len(_PRODUCT_NAMES)]
    cycle = index // len(_PRODUCT_NAMES)
    return f"{base} {cycle + 1}" if cycle else base


def section_name(index: int) -> str:
    return _SECTION_NAMES[index % len(_SECTION_NAMES)]


def feature_title(key: int, revision: int = 0) -> str:
    """A feature title from its text key; a rename bumps ``revision``."""
    area = _AREAS[key % len(_AREAS)]
    title = f"{area} {key % 97 + 1}"
    return f"{title} (rev {revision + 1})" if revision else title


def exploratory_test_title(key: int) -> str:
    kind = _TEST_KINDS[key % len(_TEST_KINDS)]
    return f"{kind} {_AREAS[(key // 8) % len(_AREAS)]} #{key % 1000}"


def bug_title(key: int) -> str:
    area = _AREAS[key % len(_AREAS)]
    thing = _BUG_OBJECTS[(key // 20) % len(_BUG_OBJECTS)]
    problem = _BUG_PROBLEMS[(key // 240) % len(_BUG_PROBLEMS)]
    return f"{area}: {thing} {problem}"


def bug_steps(key: int) -> list[str]:
    area = _AREAS[key % len(_AREAS)]
    thing = _BUG_OBJECTS[(key // 20) % len(_BUG_OBJECTS)]
    return [f"Open the {area} area", f"Use the {thing}", "Observe the result"]

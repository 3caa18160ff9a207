"""The login page. Pure: HTML text from what it must show."""

from __future__ import annotations

import html

from homecloud.frontdoor import OWN_PREFIX

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>homecloud: log in</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f3f4f6; display: flex;
       justify-content: center; align-items: center; min-height: 100vh; margin: 0; }}
form {{ background: #fff; padding: 2rem; border-radius: 8px; width: 18rem;
       box-shadow: 0 2px 12px rgba(0, 0, 0, .12); }}
h1 {{ font-size: 1.3rem; margin: 0 0 1rem; color: #1f2937; }}
label {{ display: block; margin: .6rem 0 .2rem; color: #374151; }}
input {{ width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; }}
button {{ margin-top: 1.2rem; width: 100%; padding: .6rem; font-size: 1rem; color: #fff;
         background: #2563eb; border: 0; border-radius: 4px; }}
.error {{ color: #b91c1c; margin: .5rem 0 0; }}
</style></head>
<body><form method="post" action="{action}">
<h1>homecloud</h1>
<label for="user">User</label>
<input id="user" name="user" autocomplete="username" required autofocus value="{user}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{next}">
{error}<button type="submit">Log in</button>
</form></body></html>
"""


def login_page(next_path: str, user: str = "", error: str = "") -> str:
    shown = f'<p class="error" role="alert">{html.escape(error)}</p>\n' if error else ""
    return _PAGE.format(action=f"{OWN_PREFIX}login", user=html.escape(user),
                        next=html.escape(next_path), error=shown)

"""What the browser scripts share: a failed check ends the script with one line, and a person logs
in to the page and makes a new identity there."""
import sys


def check(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")


EXPORT_PASSPHRASE = "an export passphrase"


def log_in_with_new_identity(page, base, user, password):
    """Logs `user` in on `page` (a fresh one), makes a new identity in the page (its export sealed
    under EXPORT_PASSPHRASE), and returns the page once its (empty) session list shows. An error in
    the page ends the script."""
    page.on("pageerror", lambda e: sys.exit(f"FAILED: an error in {user}'s page: {e}"))
    page.goto(base + "/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Export passphrase").fill(EXPORT_PASSPHRASE)
    page.get_by_role("button", name="Create a new identity").click()
    page.get_by_text("No sessions yet.").wait_for()
    return page

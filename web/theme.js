/**
 * Colour theme: follows the system (prefers-color-scheme) unless the person picked light or
 * dark with the toggle; the choice is kept in localStorage and set as <html data-theme>.
 */
const KEY = "codexpool-theme";
const NEXT = { auto: "dark", dark: "light", light: "auto" };
const LABEL = { auto: "Theme: system", dark: "Theme: dark", light: "Theme: light" };

/** @returns {"auto"|"dark"|"light"} */
function stored() {
  try {
    const value = localStorage.getItem(KEY);
    return value === "dark" || value === "light" ? value : "auto";
  } catch {
    return "auto";
  }
}

/** @param {"auto"|"dark"|"light"} theme */
function apply(theme) {
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  const button = document.getElementById("theme-toggle");
  if (button) {
    button.textContent = LABEL[theme];
    button.setAttribute("aria-label", `${LABEL[theme]} (change)`);
  }
}

apply(stored());
const toggle = document.getElementById("theme-toggle");
if (toggle) {
  toggle.addEventListener("click", () => {
    const theme = NEXT[stored()];
    try {
      if (theme === "auto") localStorage.removeItem(KEY);
      else localStorage.setItem(KEY, theme);
    } catch {
      /* storage off: the choice lasts for this page only */
    }
    apply(theme);
  });
}

// MathJax configuration for pymdownx.arithmatex (generic mode): typeset only the
// formulas arithmatex marked, with \( \) inline and \[ \] display delimiters. Loaded
// before docs/assets/mathjax/tex-svg-full.js (the vendored MathJax; no network access).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
    enableMenu: false,
  },
  svg: { fontCache: "global" },
};

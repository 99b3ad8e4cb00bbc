// Typeset the formulas that pymdownx.arithmatex (generic mode) leaves in the page, as
// <span class="arithmatex">\(...\)</span> and <div class="arithmatex">\[...\]</div>,
// with the KaTeX bundled in javascripts/katex/ (no network needed).
document$.subscribe(({ body }) => {
  for (const el of body.querySelectorAll(".arithmatex")) {
    const tex = el.textContent.trim();
    katex.render(tex.slice(2, -2), el, {
      displayMode: tex.startsWith("\\["),
      throwOnError: false,
    });
  }
});

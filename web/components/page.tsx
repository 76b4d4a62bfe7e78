/**
 * A page's frame: its `<h1>` (every page has exactly one), the document title, and focus moved to
 * the heading when the page changes, so keyboard and screen-reader users land on the new content.
 */
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

export function Page({ title, actions, children }: { title: string; actions?: ComponentChildren; children?: ComponentChildren }) {
  const h1 = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${title} · Paddock`;
    // Only after an in-app navigation (not on first load, where the browser's own focus is right).
    if (document.activeElement && document.activeElement !== document.body) h1.current?.focus({ preventScroll: false });
  }, [title]);
  return (
    <>
      <div class="page-head">
        <h1 ref={h1} tabIndex={-1}>
          {title}
        </h1>
        {actions ? <div class="page-actions">{actions}</div> : null}
      </div>
      {children}
    </>
  );
}

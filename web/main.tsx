/** The web UI's entry point (bundled by scripts/build-web.mjs into dist/web/app.js and app.css). */
import { render } from "preact";
import { App } from "./app.tsx";
import "./app.css";

const root = document.getElementById("app");
if (root) render(<App />, root);

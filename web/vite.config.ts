import { defineConfig } from 'vite';

/**
 * The web playground: `npm run build:web` writes web/dist, which the server serves at `/`. `npx vite web` runs a
 * dev server that forwards the API to a local Ocular (OCULAR_BASE_URL or http://127.0.0.1:8080).
 */
export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  // Kept out of node_modules, which may be shared between checkouts.
  cacheDir: '.vite',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // Scripts and styles are always files: the server's Content-Security-Policy allows no inline code.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  server: {
    proxy: Object.fromEntries(
      ['/v1', '/openai'].map((path) => [path, { target: process.env.OCULAR_BASE_URL ?? 'http://127.0.0.1:8080', changeOrigin: true }]),
    ),
  },
});

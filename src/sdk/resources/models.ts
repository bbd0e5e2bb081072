import type { Ocular, RequestOptions } from '../client.ts';
import type { Model } from '../types.ts';

/** The models (and aliases) the server serves. */
export class Models {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  /** Every model id and alias, `GET /openai/v1/models`. */
  async list(options: RequestOptions = {}): Promise<Model[]> {
    const page = await this.#client.request<{ data: Model[] }>({ ...options, method: 'GET', path: '/openai/v1/models' });
    return page.data;
  }

  /** One model; `NotFoundError` when the server does not serve it. */
  get(id: string, options: RequestOptions = {}): Promise<Model> {
    return this.#client.request<Model>({ ...options, method: 'GET', path: `/openai/v1/models/${encodeURIComponent(id)}` });
  }
}

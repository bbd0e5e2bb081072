import type { Ocular, RequestOptions } from '../client.ts';
import type { Deleted, Page, PageParams, VideoGroup, VideoGroupCreateParams, VideoGroupUpdateParams } from '../types.ts';

/** Groups of videos (`/v1/videos/groups`): search within one, a webhook per group. */
export class VideoGroups {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  create(params: VideoGroupCreateParams, options: RequestOptions = {}): Promise<VideoGroup> {
    return this.#client.request({ ...options, method: 'POST', path: '/v1/videos/groups', body: params });
  }

  list(params: PageParams = {}, options: RequestOptions = {}): Promise<Page<VideoGroup>> {
    return this.#client.request({ ...options, method: 'GET', path: '/v1/videos/groups', query: { ...params } });
  }

  get(id: string, options: RequestOptions = {}): Promise<VideoGroup> {
    return this.#client.request({ ...options, method: 'GET', path: `/v1/videos/groups/${encodeURIComponent(id)}` });
  }

  update(id: string, params: VideoGroupUpdateParams, options: RequestOptions = {}): Promise<VideoGroup> {
    return this.#client.request({ ...options, method: 'PATCH', path: `/v1/videos/groups/${encodeURIComponent(id)}`, body: params });
  }

  /** Deletes a group; one that still holds videos needs `force: true` (which deletes them too), else `ConflictError`. */
  delete(id: string, params: { force?: boolean } = {}, options: RequestOptions = {}): Promise<Deleted & { group_id: string }> {
    return this.#client.request({
      ...options,
      method: 'DELETE',
      path: `/v1/videos/groups/${encodeURIComponent(id)}`,
      query: { force: params.force },
    });
  }
}
